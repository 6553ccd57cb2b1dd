//! A run's values by key, shaped for the per-line path: every record looks up each of its
//! keys, so the map is hashed (foldhash, seeded per map) rather than ordered; the exposition
//! and the API read it out sorted by key, as an ordered map would give it.

use std::collections::HashMap;

/// Values by key: hashed lookups, iteration in key order.
#[derive(Debug, Clone)]
pub struct KeyMap<V> {
    map: HashMap<String, V, foldhash::fast::RandomState>,
}

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        KeyMap {
            map: HashMap::default(),
        }
    }
}

impl<V> KeyMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.map.get(key)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.map.get_mut(key)
    }

    pub fn insert(&mut self, key: String, value: V) -> Option<V> {
        self.map.insert(key, value)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The entries in key order.
    pub fn iter(&self) -> std::vec::IntoIter<(&String, &V)> {
        let mut all: Vec<_> = self.map.iter().collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
    }

    /// The entries, mutable, in no particular order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut V)> {
        self.map.iter_mut()
    }

    /// The keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.iter().map(|(k, _)| k)
    }

    /// The values in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }
}

/// As a map in key order (the API's `nonfinite`).
impl<V: serde::Serialize> serde::Serialize for KeyMap<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'a, V> IntoIterator for &'a KeyMap<V> {
    type Item = (&'a String, &'a V);
    type IntoIter = std::vec::IntoIter<(&'a String, &'a V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::KeyMap;

    #[test]
    fn reads_out_in_key_order_whatever_the_insertion_order() {
        let mut m = KeyMap::new();
        for k in ["zeta", "alpha", "mid", "beta", "alpha2"] {
            m.insert(k.to_string(), k.len());
        }
        let keys: Vec<_> = m.keys().map(String::as_str).collect();
        assert_eq!(keys, ["alpha", "alpha2", "beta", "mid", "zeta"]);
        assert_eq!(m.get("mid"), Some(&3));
        *m.get_mut("mid").unwrap() = 9;
        assert_eq!(m.values().copied().collect::<Vec<_>>(), [5, 6, 4, 9, 4]);
        assert_eq!(m.len(), 5);
    }
}
