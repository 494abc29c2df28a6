//! Settings a user changes while the node runs (the web UI's Settings page, `PUT
//! /api/settings`): the transfer engine's slots, retries and rate limits. The TOML
//! configuration gives each its starting value; a value set through the API is kept in
//! the `settings` table of node.sqlite and wins over the file at every start, until it is
//! reset (set to `null`), which brings the file's value back.

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One changeable setting.
pub struct Key {
    /// Its name in the API (and `[transfers].<name>` in the configuration).
    pub name: &'static str,
    /// Smallest value accepted.
    pub min: u64,
    /// Largest value accepted.
    pub max: u64,
    /// What it does, for the settings page.
    pub about: &'static str,
}

/// Every changeable setting.
pub const KEYS: &[Key] = &[
    Key { name: "global_slots", min: 1, max: 100, about: "Downloads at once over all networks" },
    Key { name: "network_slots", min: 1, max: 100, about: "Downloads at once per network" },
    Key { name: "max_retries", min: 0, max: 1000, about: "Retries of a failed download before it fails for good" },
    Key {
        name: "retry_base_secs",
        min: 1,
        max: 3600,
        about: "Seconds before the first retry (doubling each time, at most 10 minutes)",
    },
    Key {
        name: "max_download_kib",
        min: 0,
        max: 100_000_000,
        about: "Download limit over all downloads, KiB/s (0: none)",
    },
    Key { name: "max_upload_kib", min: 0, max: 100_000_000, about: "Upload limit over all uploads, KiB/s (0: none)" },
];

/// The settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    values: BTreeMap<&'static str, u64>,
    /// The configuration file's values (what a reset goes back to).
    config: BTreeMap<&'static str, u64>,
    /// Keys set through the API.
    overridden: BTreeMap<&'static str, u64>,
}

/// A setting as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SettingInfo {
    /// Name.
    pub key: &'static str,
    /// In force now.
    pub value: u64,
    /// The configuration file's value.
    pub config: u64,
    /// Set through the API (kept across restarts).
    pub overridden: bool,
    /// Smallest value accepted.
    pub min: u64,
    /// Largest value accepted.
    pub max: u64,
    /// What it does.
    pub about: &'static str,
}

fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// The storage key of a setting in the `settings` table.
pub fn stored_key(name: &str) -> String {
    format!("transfers.{name}")
}

impl Settings {
    /// From the configuration's values and the stored overrides (name → text as stored);
    /// a stored value that no longer parses or is out of range is ignored.
    pub fn new(config: BTreeMap<&'static str, u64>, stored: &BTreeMap<String, String>) -> Settings {
        let mut overridden = BTreeMap::new();
        for k in KEYS {
            if let Some(v) =
                stored.get(k.name).and_then(|t| t.parse::<u64>().ok()).filter(|v| (k.min..=k.max).contains(v))
            {
                overridden.insert(k.name, v);
            }
        }
        let mut values = config.clone();
        values.extend(overridden.iter().map(|(k, v)| (*k, *v)));
        Settings { values, config, overridden }
    }

    /// A value in force (0 for an unknown key).
    pub fn get(&self, name: &str) -> u64 {
        self.values.get(name).copied().unwrap_or(0)
    }

    /// Every setting for the API, in [`KEYS`] order.
    pub fn list(&self) -> Vec<SettingInfo> {
        KEYS.iter()
            .map(|k| SettingInfo {
                key: k.name,
                value: self.get(k.name),
                config: self.config.get(k.name).copied().unwrap_or(0),
                overridden: self.overridden.contains_key(k.name),
                min: k.min,
                max: k.max,
                about: k.about,
            })
            .collect()
    }

    /// Applies a change `{"key": number | null, ...}` (null: back to the configuration's
    /// value): all of it, or nothing when any key is unknown or any value out of range.
    /// Returns the stored overrides to write (`Some(text)`) or delete (`None`).
    pub fn apply(&mut self, change: &Map<String, Value>) -> Result<Vec<(String, Option<String>)>, String> {
        let mut plan = Vec::new();
        for (name, v) in change {
            let k = key(name).ok_or_else(|| {
                format!(
                    "no setting {name:?} (settings: {})",
                    KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
                )
            })?;
            let v =
                match v {
                    Value::Null => None,
                    v => Some(v.as_u64().filter(|n| (k.min..=k.max).contains(n)).ok_or_else(|| {
                        format!("{name} must be a whole number from {} to {}, not {v}", k.min, k.max)
                    })?),
                };
            plan.push((k, v));
        }
        let mut writes = Vec::new();
        for (k, v) in plan {
            match v {
                Some(n) => {
                    self.overridden.insert(k.name, n);
                    self.values.insert(k.name, n);
                    writes.push((k.name.to_owned(), Some(n.to_string())));
                }
                None => {
                    self.overridden.remove(k.name);
                    self.values.insert(k.name, self.config.get(k.name).copied().unwrap_or(0));
                    writes.push((k.name.to_owned(), None));
                }
            }
        }
        Ok(writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> BTreeMap<&'static str, u64> {
        KEYS.iter().map(|k| (k.name, k.min.max(3))).collect()
    }

    #[test]
    fn stored_values_win_over_the_file_until_reset() {
        let stored = BTreeMap::from([
            ("max_download_kib".to_owned(), "500".to_owned()),
            ("global_slots".to_owned(), "0".to_owned()), // out of range: ignored
            ("network_slots".to_owned(), "lots".to_owned()), // unparsable: ignored
        ]);
        let mut s = Settings::new(config(), &stored);
        assert_eq!(s.get("max_download_kib"), 500);
        assert_eq!(s.get("global_slots"), 3);
        assert_eq!(s.get("network_slots"), 3);
        let info = s.list();
        assert_eq!(info.len(), KEYS.len());
        let dl = info.iter().find(|i| i.key == "max_download_kib").unwrap();
        assert!(dl.overridden && dl.config == 3 && dl.value == 500);

        let w = s.apply(json!({"max_download_kib": null, "global_slots": 7}).as_object().unwrap()).unwrap();
        assert_eq!(s.get("max_download_kib"), 3);
        assert_eq!(s.get("global_slots"), 7);
        assert!(w.contains(&("max_download_kib".to_owned(), None)));
        assert!(w.contains(&("global_slots".to_owned(), Some("7".to_owned()))));
    }

    #[test]
    fn a_bad_change_changes_nothing() {
        let mut s = Settings::new(config(), &BTreeMap::new());
        let before = s.clone();
        for bad in [
            json!({"global_slots": 5, "nope": 1}),
            json!({"global_slots": 5, "network_slots": 0}),
            json!({"global_slots": -1}),
            json!({"global_slots": 2.5}),
            json!({"global_slots": "5"}),
            json!({"retry_base_secs": 100_000}),
        ] {
            assert!(s.apply(bad.as_object().unwrap()).is_err(), "{bad}");
            assert_eq!(s, before, "{bad}");
        }
    }
}
