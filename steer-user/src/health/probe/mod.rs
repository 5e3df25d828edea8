//! Probes sent out through one WAN: ICMP echo, TCP connect, DNS query, HTTP GET (in progress).
