//! The network-namespace lab: LAN client, router, two ISPs and an internet (in progress).
