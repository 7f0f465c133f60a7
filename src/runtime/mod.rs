//! The runtime: pins one glommio executor per listed CPU ([`placement`]),
//! defines the shard's vocabulary ([`command`]: commands, answers, typed
//! failures), runs commands on the local shard ([`local`]) or on the owning
//! shard over the one mesh RPC ([`mesh`], [`router`]), fans a client's
//! command out and merges the answers ([`dispatch`]), decides what is let
//! in ([`admission`]: timestamp window, closing, in-flight slots; [`auth`]:
//! tokens and permissions), keeps the catalog cache ([`catalog`]), reads long ranges in bounded
//! chunks ([`scan`]), reports stalled tasks when asked ([`stall`]), asks a cluster where partitions live ([`cluster`]: the seam
//! only) and names
//! every shard's counters ([`report`]). Imports storage and nothing above it; never blocks an
//! executor; never awaits a mesh send in the loop that drains the shard's
//! own receivers.

pub mod admission;
pub mod auth;
pub mod catalog;
pub mod cluster;
pub mod command;
pub mod dispatch;
pub mod local;
pub mod mesh;
pub mod placement;
pub mod report;
pub mod router;
pub mod scan;
pub mod stall;
