//! Locks shared with native work that runs with the GIL released (a LIST of the watch cache,
//! a schedule() of the node table): taken without ever blocking while holding the GIL,
//! since the holder may need the GIL back to finish. A poisoned lock is used as is: its
//! data was left by a panic that Python already saw as an exception.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

use pyo3::Python;

pub fn read<'a, T: Send + Sync>(py: Python<'_>, lock: &'a RwLock<T>) -> RwLockReadGuard<'a, T> {
    loop {
        match lock.try_read() {
            Ok(guard) => return guard,
            Err(TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(TryLockError::WouldBlock) => py.detach(|| drop(lock.read())),
        }
    }
}

pub fn write<'a, T: Send + Sync>(py: Python<'_>, lock: &'a RwLock<T>) -> RwLockWriteGuard<'a, T> {
    loop {
        match lock.try_write() {
            Ok(guard) => return guard,
            Err(TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(TryLockError::WouldBlock) => py.detach(|| drop(lock.write())),
        }
    }
}
