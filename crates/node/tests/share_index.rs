//! One share index for every network: the NMDC and Soulseek clients of a node read the
//! same snapshot (not a copy each), and a rescan replaces it for both.

mod support;

use omnipeer_nmdc::hub::HubConfig;
use omnipeer_node::nmdc::client::{ClientConfig, DcClient};
use omnipeer_node::share::SharedIndex;
use omnipeer_node::slsk::client::{SlskClient, SlskClientConfig};
use omnipeer_node::upload::Uploads;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nmdc_and_soulseek_read_one_index_and_a_rescan_replaces_it_for_both() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("pub");
    std::fs::create_dir_all(share.join("music")).unwrap();
    std::fs::write(share.join("readme.txt"), b"hello").unwrap();
    std::fs::write(share.join("music/song.mp3"), vec![7u8; 5000]).unwrap();
    let (hub, stop_hub) =
        support::start_hub(&dir.path().join("hub.sqlite"), HubConfig { name: "test".into(), ..Default::default() })
            .await;
    let (server, stop_slsk) = support::start_slsk(&dir.path().join("server.sqlite")).await;

    // What the node does: one index, handed to every network beside the upload slots.
    let uploads = Uploads::new(2, Default::default(), 0);
    let index = SharedIndex::new(vec![share.clone()]);
    uploads.set_share(index.clone());
    let dc = DcClient::start(ClientConfig {
        hub: hub.to_string(),
        nick: "sharer".into(),
        password: None,
        listen: Some("127.0.0.1:0".parse().unwrap()),
        share: vec![share.clone()],
        slots: 2,
        uploads: Some(uploads.clone()),
        db: dir.path().join("node.sqlite"),
        description: String::new(),
    })
    .await
    .unwrap();
    let sl = SlskClient::start(SlskClientConfig {
        server: server.to_string(),
        user: "sharer".into(),
        password: "pw".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        share: vec![share.clone()],
        slots: 2,
        uploads: Some(uploads.clone()),
    })
    .await
    .unwrap();

    let current = index.current();
    assert_eq!((current.file_count(), current.hashed_count()), (2, 2));
    assert!(Arc::ptr_eq(dc.share().unwrap().index(), &current), "NMDC reads a copy of its own");
    assert!(Arc::ptr_eq(&sl.share_index(), &current), "Soulseek reads a copy of its own");
    assert_eq!(sl.shared_files(), 2);

    // A new file and a rescan (requested of the index, then both networks are asked, as
    // the node does): one new snapshot, hashed, read by both.
    std::fs::write(share.join("music/new.mp3"), vec![9u8; 3000]).unwrap();
    index.request_rescan();
    let (a, b) = tokio::join!(sl.reshare(), dc.reshare());
    assert_eq!(a.unwrap(), 3);
    b.unwrap();
    let current = index.current();
    assert_eq!((current.file_count(), current.hashed_count()), (3, 3));
    assert!(Arc::ptr_eq(dc.share().unwrap().index(), &current));
    assert!(Arc::ptr_eq(&sl.share_index(), &current));
    assert!(dc.share().unwrap().by_path("pub\\music\\new.mp3").is_some());

    sl.close();
    dc.stop().await.unwrap();
    stop_hub.cancel();
    stop_slsk.cancel();
}
