//! Settings a user changes while the node runs (the web UI's Settings page, `PUT
//! /api/settings`): the nick and description, the share folders, the downloads and
//! incomplete folders, the client listen addresses, the passwords, and the transfer
//! engine's slots, retries and rate limits. The TOML configuration gives each its
//! starting value; a value set through the API is kept in the `settings` table of
//! node.sqlite and wins over the file at every start, until it is reset (set to `null`),
//! which brings the file's value back.
//!
//! This module checks a change's shape (types, ranges, characters); the node
//! (`Node::change_settings` in `super`) checks what needs the file system (a share folder
//! exists, a downloads folder can be written, a listen address is free) and puts the
//! change in force: all of it or none of it.

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Longest nick (bytes). NMDC hubs commonly allow 64 (docs/protocols/nmdc.md); Soulseek
/// servers take less in practice, and refuse a login with a name they do not like.
pub const MAX_NICK_LEN: usize = 64;
/// Longest `$MyINFO` description (bytes): DC++ and AirDC++ cut theirs well below this.
pub const MAX_DESCRIPTION_LEN: usize = 200;
/// Most share folders.
pub const MAX_SHARE_FOLDERS: usize = 64;
/// Longest folder path (bytes; Linux's PATH_MAX).
pub const MAX_PATH_LEN: usize = 4096;
/// Longest password (bytes).
pub const MAX_PASSWORD_LEN: usize = 256;

/// What kind of value a setting takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole number in a range.
    Number {
        /// Smallest value accepted.
        min: u64,
        /// Largest value accepted.
        max: u64,
    },
    /// A nick: no spaces, none of `$|<>` (NMDC's delimiters), at most [`MAX_NICK_LEN`]
    /// bytes; empty only when `optional` (then another setting's nick is used).
    Nick {
        /// Empty allowed.
        optional: bool,
    },
    /// A line of text for `$MyINFO`: none of `$|`, at most [`MAX_DESCRIPTION_LEN`].
    Description,
    /// A list of folders (each absolute; the node checks each is a folder).
    Folders,
    /// One folder (absolute; the node checks it can be created and written).
    Folder,
    /// `IP:PORT`, or empty when `optional` (NMDC passive mode).
    Address {
        /// Empty allowed.
        optional: bool,
    },
    /// A password: never shown, only whether one is set.
    Password,
    /// Shown, not changed here (the configuration file, then a restart).
    ReadOnly,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Number { .. } => "number",
            Kind::Nick { .. } => "nick",
            Kind::Description => "text",
            Kind::Folders => "folders",
            Kind::Folder => "folder",
            Kind::Address { .. } => "address",
            Kind::Password => "password",
            Kind::ReadOnly => "read_only",
        }
    }
}

/// One setting.
pub struct Key {
    /// Its name in the API.
    pub name: &'static str,
    /// The Settings page's section: `identity`, `shares`, `folders`, `network`,
    /// `passwords`, `transfers`.
    pub section: &'static str,
    /// Its configuration file key.
    pub file_key: &'static str,
    /// What it takes.
    pub kind: Kind,
    /// What it does, for the settings page.
    pub about: &'static str,
}

const fn number(name: &'static str, file_key: &'static str, min: u64, max: u64, about: &'static str) -> Key {
    Key { name, section: "transfers", file_key, kind: Kind::Number { min, max }, about }
}

/// Every setting, in the Settings page's order.
pub const KEYS: &[Key] = &[
    Key {
        name: "nick",
        section: "identity",
        file_key: "[node].nick",
        kind: Kind::Nick { optional: false },
        about: "Nick on every network (a change logs the hubs and servers in again)",
    },
    Key {
        name: "nmdc_nick",
        section: "identity",
        file_key: "",
        kind: Kind::Nick { optional: true },
        about: "Nick on hubs, if not the one above (a hub entry's own nick wins)",
    },
    Key {
        name: "slsk_nick",
        section: "identity",
        file_key: "",
        kind: Kind::Nick { optional: true },
        about: "User name on Soulseek servers, if not the nick above (a server entry's own wins)",
    },
    Key {
        name: "description",
        section: "identity",
        file_key: "[nmdc_client].description",
        kind: Kind::Description,
        about: "Description others see in the hub's user list (NMDC $MyINFO; Soulseek has none)",
    },
    Key {
        name: "share_folders",
        section: "shares",
        file_key: "[share].folders",
        kind: Kind::Folders,
        about: "Folders shared on every network (each must exist; a change rescans)",
    },
    Key {
        name: "downloads",
        section: "folders",
        file_key: "[share].downloads",
        kind: Kind::Folder,
        about: "Where finished downloads go (downloads queued from now on)",
    },
    Key {
        name: "incomplete",
        section: "folders",
        file_key: "[share].incomplete",
        kind: Kind::Folder,
        about: "Where partial downloads are kept until complete",
    },
    Key {
        name: "nmdc_listen",
        section: "network",
        file_key: "[nmdc_client].listen",
        kind: Kind::Address { optional: true },
        about: "Hub client's active-mode address, IP:PORT (port 0: any; empty: passive)",
    },
    Key {
        name: "slsk_listen",
        section: "network",
        file_key: "[slsk_client].listen",
        kind: Kind::Address { optional: false },
        about: "Soulseek client's listen address, IP:PORT (port 0: any)",
    },
    Key {
        name: "api_listen",
        section: "network",
        file_key: "[api].listen",
        kind: Kind::ReadOnly,
        about: "This API and web UI (change it in the configuration file; restart needed)",
    },
    Key {
        name: "nmdc_password",
        section: "passwords",
        file_key: "[nmdc_client].password",
        kind: Kind::Password,
        about: "Password of a registered nick on the hub",
    },
    Key {
        name: "slsk_password",
        section: "passwords",
        file_key: "[slsk_client].password",
        kind: Kind::Password,
        about: "Soulseek password (empty: one generated and kept in the data folder)",
    },
    number("global_slots", "[transfers].global_slots", 1, 100, "Downloads at once over all networks"),
    number("network_slots", "[transfers].network_slots", 1, 100, "Downloads at once per network"),
    number("max_retries", "[transfers].max_retries", 0, 1000, "Retries of a failed download before it fails for good"),
    number(
        "retry_base_secs",
        "[transfers].retry_base_secs",
        1,
        3600,
        "Seconds before the first retry (doubling each time, at most 10 minutes)",
    ),
    number(
        "max_download_kib",
        "[transfers].max_download_kib",
        0,
        100_000_000,
        "Download limit over all downloads, KiB/s (0: none)",
    ),
    number(
        "max_upload_kib",
        "[transfers].max_upload_kib",
        0,
        100_000_000,
        "Upload limit over all uploads, KiB/s (0: none)",
    ),
];

/// The settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The configuration file's values (what a reset goes back to).
    config: BTreeMap<&'static str, Value>,
    /// Keys set through the API.
    overridden: BTreeMap<&'static str, Value>,
}

/// A setting as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SettingInfo {
    /// Name.
    pub key: &'static str,
    /// The Settings page's section.
    pub section: &'static str,
    /// `number`, `nick`, `text`, `folders`, `folder`, `address`, `password`, `read_only`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// In force now (null for a password).
    pub value: Value,
    /// The configuration file's value (null for a password).
    pub config: Value,
    /// Set through the API (kept across restarts).
    pub overridden: bool,
    /// A password: whether one is in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set: Option<bool>,
    /// Smallest value accepted (numbers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    /// Largest value accepted (numbers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    /// The value shown is not in force until the node restarts.
    pub restart_needed: bool,
    /// The configuration file's key.
    pub file_key: &'static str,
    /// What it does.
    pub about: &'static str,
}

/// A setting a change got wrong: the key (the error's context) in front of the reason (a
/// `NodeError::Invalid`), so `{e:#}` reads `share_folders: /x does not exist`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BadSetting(pub String);

/// `why` about setting `key`, as the node's typed error (400 through the API).
pub fn bad(key: &str, why: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(super::NodeError::Invalid(why.into())).context(BadSetting(key.to_owned()))
}

/// The setting named `name`.
pub fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// The storage key of a setting in the `settings` table (the transfer numbers keep the
/// names they had before the other settings came).
pub fn stored_key(name: &str) -> String {
    match key(name) {
        Some(k) if k.section == "transfers" => format!("transfers.{name}"),
        _ => format!("settings.{name}"),
    }
}

fn text_ok(s: &str, forbidden: &[char]) -> Result<(), String> {
    if let Some(c) = s.chars().find(|c| c.is_control() || forbidden.contains(c)) {
        return Err(format!("{c:?} is not allowed"));
    }
    Ok(())
}

fn folder_ok(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("a folder is needed".into());
    }
    if s.len() > MAX_PATH_LEN {
        return Err(format!("a path is at most {MAX_PATH_LEN} bytes"));
    }
    text_ok(s, &[]).map_err(|e| format!("{s:?}: {e}"))?;
    if !std::path::Path::new(s).is_absolute() {
        return Err(format!("{s:?} is not a full path (start it at the root, e.g. /home/me/music)"));
    }
    Ok(())
}

/// Check `v` as a value of `k` (its shape only); the normalised value.
pub fn check(k: &Key, v: &Value) -> Result<Value, String> {
    let text = |v: &Value| v.as_str().map(str::to_owned).ok_or_else(|| format!("{} must be a string, not {v}", k.name));
    match k.kind {
        Kind::Number { min, max } => v
            .as_u64()
            .filter(|n| (min..=max).contains(n))
            .map(Value::from)
            .ok_or_else(|| format!("{} must be a whole number from {min} to {max}, not {v}", k.name)),
        Kind::Nick { optional } => {
            let s = text(v)?;
            if s.is_empty() {
                return if optional { Ok(Value::from("")) } else { Err("a nick is needed".into()) };
            }
            if s.len() > MAX_NICK_LEN {
                return Err(format!("a nick is at most {MAX_NICK_LEN} bytes"));
            }
            if s.chars().any(char::is_whitespace) {
                return Err("a nick has no spaces (NMDC hubs refuse them)".into());
            }
            text_ok(&s, &['$', '|', '<', '>'])?;
            Ok(Value::from(s))
        }
        Kind::Description => {
            let s = text(v)?;
            if s.len() > MAX_DESCRIPTION_LEN {
                return Err(format!("a description is at most {MAX_DESCRIPTION_LEN} bytes"));
            }
            text_ok(&s, &['$', '|'])?;
            Ok(Value::from(s))
        }
        Kind::Folders => {
            let list = v.as_array().ok_or_else(|| format!("{} must be a list of folders, not {v}", k.name))?;
            if list.len() > MAX_SHARE_FOLDERS {
                return Err(format!("at most {MAX_SHARE_FOLDERS} share folders"));
            }
            let mut out: Vec<String> = Vec::new();
            for f in list {
                let s = text(f)?;
                folder_ok(&s)?;
                let norm = s.trim_end_matches('/');
                let norm = if norm.is_empty() { "/" } else { norm };
                if out.iter().any(|o| o == norm) {
                    return Err(format!("{s:?} is listed twice"));
                }
                out.push(norm.to_owned());
            }
            Ok(Value::from(out))
        }
        Kind::Folder => {
            let s = text(v)?;
            folder_ok(&s)?;
            Ok(Value::from(s))
        }
        Kind::Address { optional } => {
            let s = text(v)?;
            let s = s.trim();
            if s.is_empty() && optional {
                return Ok(Value::from(""));
            }
            s.parse::<std::net::SocketAddr>()
                .map(|a| Value::from(a.to_string()))
                .map_err(|_| format!("{s:?} is not an address IP:PORT (e.g. 0.0.0.0:41200)"))
        }
        Kind::Password => {
            let s = text(v)?;
            if s.len() > MAX_PASSWORD_LEN {
                return Err(format!("a password is at most {MAX_PASSWORD_LEN} bytes"));
            }
            // `|` ends an NMDC command ($MyPass).
            text_ok(&s, &['|'])?;
            Ok(Value::from(s))
        }
        Kind::ReadOnly => Err(format!(
            "{} is not changed here: set {} in the configuration file and restart the node",
            k.name, k.file_key
        )),
    }
}

impl Settings {
    /// From the configuration's values and the stored overrides (name → text as stored:
    /// JSON, or a bare number); a stored value that no longer passes [`check`] is
    /// ignored.
    pub fn new(config: BTreeMap<&'static str, Value>, stored: &BTreeMap<String, String>) -> Settings {
        let mut overridden = BTreeMap::new();
        for k in KEYS {
            let Some(text) = stored.get(k.name) else { continue };
            let v = serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::from(text.as_str()));
            match check(k, &v) {
                Ok(v) => {
                    overridden.insert(k.name, v);
                }
                Err(e) => tracing::warn!("the stored setting {} is ignored: {e}", k.name),
            }
        }
        Settings { config, overridden }
    }

    /// The value in force (Null for an unknown key).
    pub fn value(&self, name: &str) -> Value {
        self.overridden.get(name).or_else(|| self.config.get(name)).cloned().unwrap_or(Value::Null)
    }

    /// A number in force (0 for an unknown key).
    pub fn get(&self, name: &str) -> u64 {
        self.value(name).as_u64().unwrap_or(0)
    }

    /// A text in force ("" for an unknown key).
    pub fn text(&self, name: &str) -> String {
        self.value(name).as_str().unwrap_or("").to_owned()
    }

    /// A list in force.
    pub fn list_of(&self, name: &str) -> Vec<String> {
        self.value(name)
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// Every setting for the API, in [`KEYS`] order.
    pub fn list(&self) -> Vec<SettingInfo> {
        KEYS.iter()
            .map(|k| {
                let secret = k.kind == Kind::Password;
                let (min, max) = match k.kind {
                    Kind::Number { min, max } => (Some(min), Some(max)),
                    _ => (None, None),
                };
                SettingInfo {
                    key: k.name,
                    section: k.section,
                    kind: k.kind.name(),
                    value: if secret { Value::Null } else { self.value(k.name) },
                    config: if secret { Value::Null } else { self.config.get(k.name).cloned().unwrap_or(Value::Null) },
                    overridden: self.overridden.contains_key(k.name),
                    set: secret.then(|| !self.text(k.name).is_empty()),
                    min,
                    max,
                    restart_needed: false,
                    file_key: k.file_key,
                    about: k.about,
                }
            })
            .collect()
    }

    /// Check a change `{"key": value | null, ...}` (null: back to the configuration's
    /// value) without applying it: every key known, every value of the right shape. The
    /// plan: each key with its new override (None: reset).
    pub fn plan(&self, change: &Map<String, Value>) -> anyhow::Result<Vec<(&'static Key, Option<Value>)>> {
        let mut plan = Vec::new();
        for (name, v) in change {
            let k = key(name).ok_or_else(|| {
                bad(
                    name,
                    format!(
                        "no setting {name:?} (settings: {})",
                        KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
                    ),
                )
            })?;
            let v = match v {
                Value::Null if k.kind != Kind::ReadOnly => None,
                v => Some(check(k, v).map_err(|why| bad(name, why))?),
            };
            plan.push((k, v));
        }
        Ok(plan)
    }

    /// What a plan would make of these settings.
    pub fn with(&self, plan: &[(&'static Key, Option<Value>)]) -> Settings {
        let mut next = self.clone();
        for (k, v) in plan {
            match v {
                Some(v) => next.overridden.insert(k.name, v.clone()),
                None => next.overridden.remove(k.name),
            };
        }
        next
    }

    /// The stored overrides a plan writes (`Some(text)`) or deletes (`None`).
    pub fn writes(plan: &[(&'static Key, Option<Value>)]) -> Vec<(String, Option<String>)> {
        plan.iter().map(|(k, v)| (stored_key(k.name), v.as_ref().map(|v| v.to_string()))).collect()
    }

    /// Applies a change (see [`Settings::plan`]): all of it, or nothing when any key is
    /// unknown or any value wrong. Returns the stored overrides to write.
    pub fn apply(&mut self, change: &Map<String, Value>) -> anyhow::Result<Vec<(String, Option<String>)>> {
        let plan = self.plan(change)?;
        *self = self.with(&plan);
        Ok(Settings::writes(&plan))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> BTreeMap<&'static str, Value> {
        let mut m: BTreeMap<&'static str, Value> = KEYS
            .iter()
            .filter_map(|k| match k.kind {
                Kind::Number { min, .. } => Some((k.name, json!(min.max(3)))),
                _ => None,
            })
            .collect();
        m.insert("nick", json!("alice"));
        m.insert("share_folders", json!(["/srv/share"]));
        m
    }

    #[test]
    fn stored_values_win_over_the_file_until_reset() {
        let stored = BTreeMap::from([
            ("max_download_kib".to_owned(), "500".to_owned()),
            ("global_slots".to_owned(), "0".to_owned()), // out of range: ignored
            ("network_slots".to_owned(), "lots".to_owned()), // unparsable: ignored
            ("nick".to_owned(), "\"bob\"".to_owned()),
            ("slsk_password".to_owned(), "\"secret\"".to_owned()),
        ]);
        let mut s = Settings::new(config(), &stored);
        assert_eq!(s.get("max_download_kib"), 500);
        assert_eq!(s.get("global_slots"), 3);
        assert_eq!(s.get("network_slots"), 3);
        assert_eq!(s.text("nick"), "bob");
        let info = s.list();
        assert_eq!(info.len(), KEYS.len());
        let dl = info.iter().find(|i| i.key == "max_download_kib").unwrap();
        assert!(dl.overridden && dl.config == 3 && dl.value == 500);
        // A password shows whether it is set, never its value.
        let pw = info.iter().find(|i| i.key == "slsk_password").unwrap();
        assert_eq!((pw.set, &pw.value), (Some(true), &Value::Null));
        assert!(!serde_json::to_string(&info).unwrap().contains("secret"));

        let w =
            s.apply(json!({"max_download_kib": null, "global_slots": 7, "nick": null}).as_object().unwrap()).unwrap();
        assert_eq!(s.get("max_download_kib"), 3);
        assert_eq!(s.get("global_slots"), 7);
        assert_eq!(s.text("nick"), "alice");
        assert!(w.contains(&("transfers.max_download_kib".to_owned(), None)));
        assert!(w.contains(&("transfers.global_slots".to_owned(), Some("7".to_owned()))));
        assert!(w.contains(&("settings.nick".to_owned(), None)));
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
            json!({"global_slots": 5, "nick": "two words"}),
            json!({"nick": ""}),
            json!({"nick": "a|b"}),
            json!({"nick": "x".repeat(MAX_NICK_LEN + 1)}),
            json!({"description": "costs $5"}),
            json!({"share_folders": ["relative/path"]}),
            json!({"share_folders": ["/a", "/a/"]}),
            json!({"share_folders": "/a"}),
            json!({"downloads": ""}),
            json!({"slsk_listen": "nowhere"}),
            json!({"slsk_listen": ""}),
            json!({"api_listen": "127.0.0.1:1"}),
            json!({"api_listen": null}),
            json!({"nmdc_password": "a|b"}),
        ] {
            let e = s.apply(bad.as_object().unwrap()).unwrap_err();
            assert!(
                matches!(super::super::NodeError::of(&e), Some(super::super::NodeError::Invalid(_))),
                "{bad}: {e:#}"
            );
            assert!(e.downcast_ref::<BadSetting>().is_some(), "{bad}: {e:#}");
            assert_eq!(s, before, "{bad}");
        }
        let e = s.apply(json!({"nick": "ok", "share_folders": ["x"]}).as_object().unwrap()).unwrap_err();
        assert_eq!(e.downcast_ref::<BadSetting>().unwrap().0, "share_folders");
        assert!(format!("{e:#}").starts_with("share_folders: "), "{e:#}");
    }

    #[test]
    fn values_are_normalised() {
        let mut s = Settings::new(config(), &BTreeMap::new());
        s.apply(
            json!({"share_folders": ["/a/", "/b"], "nmdc_listen": "", "slsk_listen": " 0.0.0.0:2234 "})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(s.list_of("share_folders"), ["/a", "/b"]);
        assert_eq!(s.text("nmdc_listen"), "");
        assert_eq!(s.text("slsk_listen"), "0.0.0.0:2234");
    }
}
