//! A run's values by key, shaped for the per-line path: every record looks up each of its
//! keys, so the map is hashed (foldhash, seeded per map) rather than ordered, and each key
//! keeps the slot it was given (keys are never removed), so that a caller may remember where
//! a key is. The exposition and the API read it out sorted by key, as an ordered map would
//! give it.

use std::collections::HashMap;

/// Values by key: hashed lookups, stable slots, iteration in key order.
#[derive(Debug, Clone)]
pub struct KeyMap<V> {
    values: Vec<V>,
    index: HashMap<String, usize, foldhash::fast::RandomState>,
}

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        KeyMap {
            values: Vec::new(),
            index: HashMap::default(),
        }
    }
}

impl<V> KeyMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.index.get(key).map(|&i| &self.values[i])
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.index.get(key).map(|&i| &mut self.values[i])
    }

    /// The key's slot, for [`KeyMap::at_mut`]: it never changes.
    pub fn slot(&self, key: &str) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// The value in a slot [`KeyMap::slot`] gave.
    pub fn at_mut(&mut self, slot: usize) -> &mut V {
        &mut self.values[slot]
    }

    pub fn insert(&mut self, key: String, value: V) -> Option<V> {
        match self.index.get(&key) {
            Some(&i) => Some(std::mem::replace(&mut self.values[i], value)),
            None => {
                self.index.insert(key, self.values.len());
                self.values.push(value);
                None
            }
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The entries in key order.
    pub fn iter(&self) -> std::vec::IntoIter<(&String, &V)> {
        let mut all: Vec<_> = self
            .index
            .iter()
            .map(|(k, &i)| (k, &self.values[i]))
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
    }

    /// Calls `f` on every entry, in no particular order.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&str, &mut V)) {
        for (k, &i) in &self.index {
            f(k, &mut self.values[i]);
        }
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
        let slot = m.slot("beta").unwrap();
        m.insert("aardvark".to_string(), 1);
        assert_eq!(m.slot("beta"), Some(slot), "a slot never moves");
        *m.at_mut(slot) += 10;
        assert_eq!(m.get("beta"), Some(&14));
        assert_eq!(m.insert("beta".to_string(), 0), Some(14));
    }
}
