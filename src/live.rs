//! A value that a reload replaces whole while readers go on with the one they took.

use std::sync::{Arc, RwLock};

pub struct Live<T>(RwLock<Arc<T>>);

impl<T> Live<T> {
    pub fn new(value: T) -> Live<T> {
        Live(RwLock::new(Arc::new(value)))
    }

    /// The value now; a later `set` does not change what the caller holds.
    pub fn get(&self) -> Arc<T> {
        // The lock only guards a pointer swap, which cannot panic half-way.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, value: T) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}
