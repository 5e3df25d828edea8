//! Routing: per-WAN tables and fwmark rules, reconciled with rtnetlink (in progress).
