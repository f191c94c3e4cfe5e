// SPDX-License-Identifier: GPL-2.0

#include <linux/rwsem.h>

__rust_helper void rust_helper_rwsem_assert_held(const struct rw_semaphore *sem)
{
	rwsem_assert_held(sem);
}

__rust_helper void
rust_helper_rwsem_assert_held_write(const struct rw_semaphore *sem)
{
	rwsem_assert_held_write(sem);
}
