//! Quick end-to-end checks of the append, read, reopen and roll paths on the real filesystem.

use ss_log::{Batch, Log, Options};

#[test]
fn append_read_reopen_and_roll_across_fragments() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        fragment_max_bytes: 4096,
        frame_max_bytes: 1024,
        pending_max_bytes: 4096,
        ..Options::default()
    };
    let mut acks = Vec::new();
    {
        let log = Log::open(dir.path(), opts.clone()).unwrap();
        let j = log.journal("smoke").unwrap();
        for i in 0..200u32 {
            acks.push(j.append(&Batch::single(&i.to_le_bytes().repeat(10))).unwrap());
        }
        assert!(j.fragments().len() > 2, "{:?}", j.fragments());
    }
    let log = Log::open(dir.path(), opts).unwrap();
    let j = log.journal("smoke").unwrap();
    assert_eq!(j.durable_head(), acks.last().unwrap().end);
    let mut r = j.reader(0);
    for (i, ack) in acks.iter().enumerate() {
        let f = r.try_next().unwrap().unwrap();
        assert_eq!(f.offset, ack.offset);
        let m: Vec<_> = f.messages().collect::<Result<_, _>>().unwrap();
        assert_eq!(m, vec![&(i as u32).to_le_bytes().repeat(10)[..]]);
    }
    assert!(r.try_next().unwrap().is_none());
    assert_eq!(
        j.last_frame().unwrap().unwrap().offset,
        acks.last().unwrap().offset
    );
}
