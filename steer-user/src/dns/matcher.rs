//! Which set a name belongs to: a set's domain matches itself and every name under it; the
//! longest matching domain wins across sets. Names are compared as steer stores them
//! (lowercase, no trailing dot), so case and a trailing dot in a question do not matter.

use std::collections::HashMap;

/// A set with domains, as the DNS side needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSet {
    /// The set's rule id in the kernel.
    pub rule: u32,
    pub name: String,
    /// Normalized domains (lowercase, no trailing dot).
    pub domains: Vec<String>,
    /// Answer AAAA questions for its names with no addresses, and learn no IPv6 address.
    pub filter_aaaa: bool,
}

/// A name's set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Match<'m> {
    pub set: &'m DomainSet,
    /// The set's position in the configuration (lower comes first, and wins an address that
    /// two sets claim).
    pub rank: usize,
    /// The configured domain that matched.
    pub domain: &'m str,
}

/// Every configured domain, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matcher {
    sets: Vec<DomainSet>,
    by_domain: HashMap<String, usize>,
}

impl Matcher {
    /// `sets` in configuration order. A domain listed by two sets stays with the first (the
    /// configuration refuses that unless `general.duplicates = "first-set-wins"`).
    pub fn new(sets: Vec<DomainSet>) -> Matcher {
        let mut by_domain = HashMap::new();
        for (i, s) in sets.iter().enumerate() {
            for d in &s.domains {
                by_domain.entry(d.clone()).or_insert(i);
            }
        }
        Matcher { sets, by_domain }
    }

    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    pub fn sets(&self) -> &[DomainSet] {
        &self.sets
    }

    /// The set of `name` (as steer stores names): the longest configured domain that is
    /// `name` or one of its parents.
    pub fn find(&self, name: &str) -> Option<Match<'_>> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let mut rest = name;
        loop {
            if let Some((domain, &i)) = self.by_domain.get_key_value(rest) {
                return Some(Match {
                    set: &self.sets[i],
                    rank: i,
                    domain,
                });
            }
            rest = rest.split_once('.')?.1;
        }
    }

    /// The configuration position of the set with rule `rule`.
    pub fn rank(&self, rule: u32) -> Option<usize> {
        self.sets.iter().position(|s| s.rule == rule)
    }

    /// The set with rule `rule`.
    pub fn set(&self, rule: u32) -> Option<&DomainSet> {
        self.sets.iter().find(|s| s.rule == rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rule: u32, name: &str, domains: &[&str]) -> DomainSet {
        DomainSet {
            rule,
            name: name.into(),
            domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            filter_aaaa: false,
        }
    }

    #[test]
    fn a_domain_matches_itself_and_its_subdomains_and_the_longest_wins() {
        let m = Matcher::new(vec![
            set(3, "video", &["example.com", "cdn.net"]),
            set(5, "bank", &["bank.example.com"]),
        ]);
        let rule = |n: &str| m.find(n).map(|x| x.set.rule);
        assert_eq!(rule("example.com"), Some(3));
        assert_eq!(rule("www.example.com"), Some(3));
        assert_eq!(rule("bank.example.com"), Some(5));
        assert_eq!(rule("login.bank.example.com"), Some(5));
        assert_eq!(
            rule("example.com."),
            Some(3),
            "a trailing dot does not matter"
        );
        assert_eq!(rule("notexample.com"), None, "labels, not characters");
        assert_eq!(rule("com"), None);
        assert_eq!(rule(""), None);
        assert_eq!(m.find("a.cdn.net").unwrap().domain, "cdn.net");
        assert_eq!(m.rank(5), Some(1));
    }
}
