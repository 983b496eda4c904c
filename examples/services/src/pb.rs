//! The generated gRPC code for `user.v1`, `order.v1` and `item.v1` (`proto/`).
#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

/// `user.v1`.
pub mod user {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("user.v1");
    }
}

/// `order.v1`.
pub mod order {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("order.v1");
    }
}

/// `item.v1`.
pub mod item {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("item.v1");
    }
}
