//! What the NMDC and ADC hub-session drivers (`super::client`, `crate::adc::client`) share:
//! indexing the share, the listeners, the upload context, waiting for the login, fetching
//! a file list. Each keeps its own protocol machine and its own run loop.

use super::cc::{DownloadJob, Downloaded, UploadContext};
use super::share::DcShare;
use crate::login::LoginRefused;
use crate::store::Store;
use crate::upload::Uploads;
use anyhow::{anyhow, bail, Context};
use omnipeer_nmdc::filelist::{FileList, Limits};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Index and hash the share folders (unchanged files' hashes from `store`'s cache) and
/// log what it took as `what`: the node's one index when there is one (`shared`, walked
/// again first with `rescan`), else this client's own.
pub(crate) fn index_share(
    shared: Option<&crate::share::SharedIndex>,
    roots: &[PathBuf],
    db: &Path,
    store: &mut Store,
    cid: &str,
    what: &str,
    rescan: bool,
) -> anyhow::Result<DcShare> {
    let (share, stats) = match shared {
        Some(s) => DcShare::from_shared(s, db, cid, rescan)?,
        None => DcShare::build(roots, store, cid)?,
    };
    stats.log(what);
    Ok(share)
}

/// Open the database and index the share (none when `roots` is empty), off the runtime.
pub(crate) async fn open_share(
    db: PathBuf,
    roots: Vec<PathBuf>,
    shared: Option<crate::share::SharedIndex>,
    cid: String,
    what: &'static str,
) -> anyhow::Result<(Arc<Mutex<Store>>, Option<Arc<DcShare>>)> {
    let (store, share) = tokio::task::spawn_blocking(move || -> anyhow::Result<(Store, Option<DcShare>)> {
        let mut store = Store::open(&db)?;
        if roots.is_empty() {
            return Ok((store, None));
        }
        let share = index_share(shared.as_ref(), &roots, &db, &mut store, &cid, what, false)?;
        Ok((store, Some(share)))
    })
    .await??;
    Ok((Arc::new(Mutex::new(store)), share.map(Arc::new)))
}

/// Index the share again (a rescan), off the runtime.
pub(crate) async fn reindex_share(
    shared: Option<crate::share::SharedIndex>,
    roots: Vec<PathBuf>,
    db: PathBuf,
    cid: String,
    what: &'static str,
) -> anyhow::Result<Arc<DcShare>> {
    let share = tokio::task::spawn_blocking(move || -> anyhow::Result<DcShare> {
        index_share(shared.as_ref(), &roots, &db, &mut Store::open(&db)?, &cid, what, true)
    })
    .await??;
    Ok(Arc::new(share))
}

/// Active (`listen`): the client-to-client listener and a UDP socket on the same port for
/// search results. Passive: no listener, and a UDP socket only to send results to active
/// searchers.
pub(crate) async fn bind_listeners(
    listen: Option<SocketAddr>,
) -> anyhow::Result<(Option<TcpListener>, Arc<UdpSocket>)> {
    Ok(match listen {
        Some(addr) => {
            let l = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
            let port = l.local_addr()?.port();
            let u = UdpSocket::bind(SocketAddr::new(addr.ip(), port))
                .await
                .with_context(|| format!("cannot listen for UDP on {}:{port}", addr.ip()))?;
            (Some(l), Arc::new(u))
        }
        None => (None, Arc::new(UdpSocket::bind("0.0.0.0:0").await?)),
    })
}

/// The uploads a session serves through: the node's (`uploads`), or its own with `slots`
/// slots and no limit; and with a share, the context its upload connections run in.
pub(crate) fn upload_context(
    uploads: Option<&Arc<Uploads>>,
    slots: usize,
    shutdown: &CancellationToken,
    share: Option<&Arc<DcShare>>,
    store: &Arc<Mutex<Store>>,
    channel: &Arc<str>,
) -> (Arc<Uploads>, Option<UploadContext>) {
    let uploads = match uploads {
        Some(u) => u.clone(),
        None => Uploads::standalone(slots, shutdown.clone()),
    };
    let ctx = share.map(|s| UploadContext {
        share: Arc::new(Mutex::new(s.clone())),
        store: store.clone(),
        uploads: uploads.clone(),
        channel: channel.clone(),
    });
    (uploads, ctx)
}

/// Wait up to `wait` for the session task to report its login on `logged`; on anything but
/// success the session is cancelled and the error (the task's own, when it ended first)
/// returned.
pub(crate) async fn wait_for_login(
    logged: oneshot::Receiver<anyhow::Result<()>>,
    task: &mut JoinHandle<anyhow::Result<()>>,
    shutdown: &CancellationToken,
    wait: Duration,
    hub: &str,
) -> anyhow::Result<()> {
    match tokio::time::timeout(wait, logged).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => {
            shutdown.cancel();
            Err(e)
        }
        Ok(Err(_)) => {
            shutdown.cancel();
            match task.await {
                Ok(Err(e)) => Err(e),
                _ => Err(anyhow!("the hub session ended before login")),
            }
        }
        Err(_) => {
            shutdown.cancel();
            bail!("logging in to {hub} timed out");
        }
    }
}

/// The session logged in: tell [`wait_for_login`] (once).
pub(crate) fn logged_in(logged: &mut Option<oneshot::Sender<anyhow::Result<()>>>) {
    if let Some(tx) = logged.take() {
        let _ = tx.send(Ok(()));
    }
}

/// The hub refused the login: tell [`wait_for_login`] (once), and end the session with
/// the same refusal.
pub(crate) fn login_refused(
    logged: &mut Option<oneshot::Sender<anyhow::Result<()>>>,
    refused: LoginRefused,
) -> anyhow::Error {
    if let Some(tx) = logged.take() {
        let _ = tx.send(Err(refused.clone().into()));
    }
    refused.into()
}

/// Fetch and parse `from`'s file list (`files.xml.bz2`, docs/protocols/nmdc.md; ADC uses
/// the same format): `download` fetches it like a file (no slot needed) into a file in
/// `tmp_dir` named `{prefix}-<random>.xml.bz2`, removed afterwards, and it is read within
/// the parser's limits ([`Limits`], with at most `max_entries` folders and files).
pub(crate) async fn fetch_file_list<F, Fut>(
    from: &str,
    tmp_dir: &Path,
    prefix: &str,
    max_entries: usize,
    download: F,
) -> anyhow::Result<FileList>
where
    F: FnOnce(DownloadJob) -> Fut,
    Fut: Future<Output = anyhow::Result<Downloaded>>,
{
    std::fs::create_dir_all(tmp_dir)?;
    let tag: u64 = rand::random();
    let out = tmp_dir.join(format!("{prefix}-{tag:016x}.xml.bz2"));
    let job = DownloadJob {
        what: omnipeer_nmdc::transfer::Identifier::FileList,
        out: out.clone(),
        progress: Arc::default(),
        total: Arc::default(),
        control: Arc::default(),
    };
    let got = download(job).await;
    let data = got.and_then(|_| std::fs::read(&out).map_err(anyhow::Error::from));
    let _ = std::fs::remove_file(&out);
    let data = data?;
    let limits = Limits { max_entries, ..Default::default() };
    tokio::task::spawn_blocking(move || FileList::from_bz2_with(&data, &limits))
        .await?
        .map_err(|e| anyhow!("{from}'s file list cannot be read: {e}"))
}

/// The next connection on the listener; never, without one (passive).
pub(crate) async fn accept(listener: &Option<TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}
