//! Segmented downloads in `node.sqlite` (migration 10): a transfer's other sources, the
//! blocks already verified against its TTH (so a restart, even after `kill -9`, fetches
//! only the missing ones: `crate::segments`), and its note.

use super::Store;
use crate::app::net::Network;
use rusqlite::params;

/// One more source of a transfer's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraSource {
    /// Its network.
    pub network: Network,
    /// The hub or server.
    pub hub: String,
    /// The user.
    pub source: String,
    /// The file's path there.
    pub remote_path: String,
}

impl Store {
    /// Remember another source of transfer `id` (again: no change).
    pub fn transfer_source_add(&self, id: i64, s: &ExtraSource) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO transfer_sources (transfer, network, hub, source, remote_path)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, s.network.as_str(), s.hub, s.source, s.remote_path],
        )?;
        Ok(())
    }

    /// The other sources of transfer `id`, in the order added.
    pub fn transfer_sources(&self, id: i64) -> anyhow::Result<Vec<ExtraSource>> {
        let mut st = self.conn.prepare(
            "SELECT network, hub, source, remote_path FROM transfer_sources WHERE transfer = ?1 ORDER BY rowid",
        )?;
        let rows = st.query_map(params![id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (network, hub, source, remote_path) = row?;
            if let Ok(network) = network.parse::<Network>() {
                out.push(ExtraSource { network, hub, source, remote_path });
            }
        }
        Ok(out)
    }

    /// Block `block` (of `block_size` bytes) of transfer `id` is verified and on disk.
    pub fn transfer_block_verified(&self, id: i64, block_size: u64, block: u64) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO transfer_blocks (transfer, block_size, block) VALUES (?1, ?2, ?3)",
            params![id, block_size as i64, block as i64],
        )?;
        Ok(())
    }

    /// The verified blocks of transfer `id` cut at `block_size`, in order (blocks cut at
    /// another size, from another tree, are forgotten).
    pub fn transfer_blocks(&self, id: i64, block_size: u64) -> anyhow::Result<Vec<u64>> {
        self.conn.execute(
            "DELETE FROM transfer_blocks WHERE transfer = ?1 AND block_size != ?2",
            params![id, block_size as i64],
        )?;
        let mut st = self.conn.prepare("SELECT block FROM transfer_blocks WHERE transfer = ?1 ORDER BY block")?;
        let rows = st.query_map(params![id], |r| r.get::<_, i64>(0))?;
        Ok(rows.map(|r| r.map(|b| b as u64)).collect::<Result<_, _>>()?)
    }

    /// Bytes of transfer `id` (of `size` bytes) in verified blocks, if it has any: what a
    /// paused or failed segmented download holds (its partial file is sparse, so the
    /// file's length says nothing).
    pub fn transfer_verified_bytes(&self, id: i64, size: u64) -> anyhow::Result<Option<u64>> {
        let mut st = self.conn.prepare("SELECT block_size, block FROM transfer_blocks WHERE transfer = ?1")?;
        let rows = st.query_map(params![id], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)))?;
        let mut total = None;
        for r in rows {
            let (bs, b) = r?;
            let start = b.saturating_mul(bs);
            *total.get_or_insert(0u64) += bs.min(size.saturating_sub(start));
        }
        Ok(total)
    }

    /// Forget every verified block of transfer `id` (its partial file is gone).
    pub fn transfer_blocks_clear(&self, id: i64) -> anyhow::Result<()> {
        self.conn.execute("DELETE FROM transfer_blocks WHERE transfer = ?1", params![id])?;
        Ok(())
    }

    /// Set the note of transfer `id`.
    pub fn transfer_set_note(&self, id: i64, note: &str) -> anyhow::Result<()> {
        self.conn.execute("UPDATE transfers SET note = ?1 WHERE id = ?2", params![note, id])?;
        Ok(())
    }

    /// The note of transfer `id` ("" if none).
    pub fn transfer_note(&self, id: i64) -> anyhow::Result<String> {
        Ok(self
            .conn
            .query_row("SELECT note FROM transfers WHERE id = ?1", params![id], |r| r.get(0))
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::node::NewTransfer;

    fn new_transfer(name: &str) -> NewTransfer {
        NewTransfer {
            network: Network::Nmdc,
            source: "alice".into(),
            hub: "hub".into(),
            remote_path: name.into(),
            tth: None,
            name: name.into(),
            size: 10 << 20,
            local_path: format!("/tmp/{name}"),
            group: None,
        }
    }

    #[test]
    fn verified_blocks_survive_a_reopen_and_go_with_their_transfer() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("node.sqlite");
        let id = {
            let s = Store::open(&path).unwrap();
            let t = s.transfer_add(&new_transfer("a.bin")).unwrap();
            s.transfer_block_verified(t.id, 1 << 20, 3).unwrap();
            s.transfer_block_verified(t.id, 1 << 20, 1).unwrap();
            s.transfer_source_add(
                t.id,
                &ExtraSource {
                    network: Network::Slsk,
                    hub: "srv".into(),
                    source: "bob".into(),
                    remote_path: "x\\a.bin".into(),
                },
            )
            .unwrap();
            s.transfer_set_note(t.id, "carol dropped").unwrap();
            t.id
        };
        let s = Store::open(&path).unwrap();
        // A paused download shows what its blocks hold (block 3 of a 3.5 MiB file is the
        // short last one), not its sparse file's length.
        assert_eq!(s.transfer_verified_bytes(id, (7 << 20) / 2).unwrap(), Some((1 << 20) + (1 << 19)));
        assert_eq!(s.transfer_verified_bytes(id + 1, 1 << 30).unwrap(), None);
        assert_eq!(s.transfer_blocks(id, 1 << 20).unwrap(), vec![1, 3]);
        assert_eq!(s.transfer_sources(id).unwrap()[0].source, "bob");
        assert_eq!(s.transfer_note(id).unwrap(), "carol dropped");
        // Another tree level: the old blocks are forgotten.
        assert!(s.transfer_blocks(id, 2 << 20).unwrap().is_empty());
        s.transfer_block_verified(id, 1 << 20, 5).unwrap();
        s.transfer_delete(id).unwrap();
        let t = s.transfer_add(&new_transfer("b.bin")).unwrap();
        assert_eq!(t.id, id, "the row id is reused");
        assert!(s.transfer_blocks(id, 1 << 20).unwrap().is_empty(), "and the old blocks are gone");
        assert!(s.transfer_sources(id).unwrap().is_empty());
    }
}
