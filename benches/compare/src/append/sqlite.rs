//! SQLite (bundled) in WAL mode with `synchronous=FULL`: each record is one `INSERT` in its own
//! (implicit) transaction, so each call commits and syncs the WAL before returning. Concurrent
//! writers share one connection behind a mutex: SQLite has one writer at a time anyway, and a
//! connection per writer would wait on `SQLITE_BUSY` with the busy handler's sleeps.

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use rusqlite::{params, Connection};

use super::DurableAppender;

pub struct SqliteAppender {
    conn: Mutex<Connection>,
}

/// Opens (creating) `path` in WAL mode with `synchronous=FULL`, checking both took effect.
pub fn open_durable(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening SQLite {}", path.display()))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .context("setting journal_mode=WAL")?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "SQLite refused WAL mode: {mode}"
    );
    conn.execute_batch("PRAGMA synchronous=FULL")
        .context("setting synchronous=FULL")?;
    let sync: i64 = conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .context("reading synchronous")?;
    anyhow::ensure!(sync == 2, "SQLite synchronous is {sync}, expected 2 (FULL)");
    Ok(conn)
}

impl SqliteAppender {
    pub fn open(path: &Path) -> anyhow::Result<SqliteAppender> {
        let conn = open_durable(path)?;
        conn.execute_batch(
            "CREATE TABLE records (id INTEGER PRIMARY KEY, writer INTEGER NOT NULL, body BLOB NOT NULL)",
        )
        .context("creating the records table")?;
        Ok(SqliteAppender {
            conn: Mutex::new(conn),
        })
    }
}

impl DurableAppender for SqliteAppender {
    fn append(&self, writer: usize, record: &[u8]) -> anyhow::Result<()> {
        let conn = self.conn.lock().expect("SQLite connection lock");
        conn.prepare_cached("INSERT INTO records (writer, body) VALUES (?1, ?2)")
            .and_then(|mut insert| insert.execute(params![writer as i64, record]))
            .context("SQLite insert (autocommit)")?;
        Ok(())
    }
}

#[cfg(test)]
impl SqliteAppender {
    pub fn row_count(&self) -> u64 {
        let conn = self.conn.lock().expect("SQLite connection lock");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM records", [], |r| r.get(0))
            .expect("count rows");
        n as u64
    }
}
