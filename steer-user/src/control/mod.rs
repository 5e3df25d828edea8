//! Control socket: the daemon side (server) and the CLI side (client).
