//! redis-tasks (being written).
pub use redis_tasks_protocol as protocol;
