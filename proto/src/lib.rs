//! Code generated from `proto/` (our minimal Teleport subset). Module nesting
//! mirrors the protobuf packages so cross-package references resolve.
#![allow(clippy::all, missing_docs, non_snake_case)]

pub mod wrappers {
    include!(concat!(env!("OUT_DIR"), "/wrappers.rs"));
}
pub mod types {
    include!(concat!(env!("OUT_DIR"), "/types.rs"));
}
pub mod teleport {
    pub mod header {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/teleport.header.v1.rs"));
        }
    }
    pub mod users {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/teleport.users.v1.rs"));
        }
    }
    pub mod accessmonitoringrules {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/teleport.accessmonitoringrules.v1.rs"));
        }
    }
}
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/proto.rs"));
}
