//! A small ISO BMFF reader for the tests: walks boxes and reads what a fragment says about
//! itself (`mfhd`, `tfdt`, `trun`), independently of the server's own writer.

/// One box: its type and payload (after the 8- or 16-byte header).
pub fn boxes(data: &[u8]) -> Vec<(String, &[u8])> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 8 <= data.len() {
        let size32 = u32::from_be_bytes(data[i..i + 4].try_into().unwrap()) as usize;
        let kind = String::from_utf8_lossy(&data[i + 4..i + 8]).into_owned();
        let (header, size) = if size32 == 1 {
            let s = u64::from_be_bytes(data[i + 8..i + 16].try_into().unwrap()) as usize;
            (16, s)
        } else if size32 == 0 {
            (8, data.len() - i)
        } else {
            (8, size32)
        };
        assert!(
            size >= header && i + size <= data.len(),
            "box {kind} overruns"
        );
        out.push((kind, &data[i + header..i + size]));
        i += size;
    }
    assert_eq!(i, data.len(), "trailing bytes after the last box");
    out
}

/// The first box of `kind` among `data`'s boxes, descending through `path` first.
pub fn find<'a>(data: &'a [u8], path: &[&str]) -> Option<&'a [u8]> {
    let (first, rest) = path.split_first()?;
    let (_, payload) = boxes(data).into_iter().find(|(k, _)| k == first)?;
    if rest.is_empty() {
        Some(payload)
    } else {
        find(payload, rest)
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// What one media fragment (`styp`? `moof` `mdat`) says.
#[derive(Debug, Clone)]
pub struct FragmentInfo {
    pub sequence: u32,
    pub base_time: u64,
    pub durations: Vec<u32>,
    /// Per sample: true when it is a sync sample (keyframe).
    pub sync: Vec<bool>,
    /// Bytes of sample data in `mdat`.
    pub mdat_len: usize,
}

impl FragmentInfo {
    pub fn duration(&self) -> u64 {
        self.durations.iter().map(|d| u64::from(*d)).sum()
    }
}

/// Parses one fragment with a single track.
pub fn fragment(data: &[u8]) -> FragmentInfo {
    let top = boxes(data);
    let kinds: Vec<&str> = top.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        kinds == ["styp", "moof", "mdat"] || kinds == ["moof", "mdat"],
        "fragment boxes {kinds:?}"
    );
    let moof = find(data, &["moof"]).unwrap();
    let mdat = find(data, &["mdat"]).unwrap();
    let mfhd = find(moof, &["mfhd"]).unwrap();
    let sequence = be32(mfhd, 4);
    let tfhd = find(moof, &["traf", "tfhd"]).unwrap();
    let tfhd_flags = be32(tfhd, 0) & 0xff_ffff;
    let mut at = 8; // version/flags + track_ID
    if tfhd_flags & 0x1 != 0 {
        at += 8;
    }
    if tfhd_flags & 0x2 != 0 {
        at += 4;
    }
    let default_duration = (tfhd_flags & 0x8 != 0).then(|| {
        let v = be32(tfhd, at);
        at += 4;
        v
    });
    if tfhd_flags & 0x10 != 0 {
        at += 4;
    }
    let default_flags = (tfhd_flags & 0x20 != 0).then(|| be32(tfhd, at));
    let tfdt = find(moof, &["traf", "tfdt"]).unwrap();
    let base_time = if tfdt[0] == 1 {
        u64::from_be_bytes(tfdt[4..12].try_into().unwrap())
    } else {
        u64::from(be32(tfdt, 4))
    };
    let trun = find(moof, &["traf", "trun"]).unwrap();
    let flags = be32(trun, 0) & 0xff_ffff;
    let count = be32(trun, 4) as usize;
    let mut at = 8;
    if flags & 0x1 != 0 {
        at += 4;
    }
    let first_flags = (flags & 0x4 != 0).then(|| {
        let v = be32(trun, at);
        at += 4;
        v
    });
    let (mut durations, mut sync, mut sizes) = (Vec::new(), Vec::new(), 0usize);
    for i in 0..count {
        let mut duration = default_duration.unwrap_or(0);
        let mut sample_flags = default_flags.unwrap_or(0);
        if flags & 0x100 != 0 {
            duration = be32(trun, at);
            at += 4;
        }
        if flags & 0x200 != 0 {
            sizes += be32(trun, at) as usize;
            at += 4;
        }
        if flags & 0x400 != 0 {
            sample_flags = be32(trun, at);
            at += 4;
        }
        if i == 0
            && let Some(f) = first_flags
        {
            sample_flags = f;
        }
        if flags & 0x800 != 0 {
            at += 4;
        }
        durations.push(duration);
        sync.push(sample_flags & 0x0001_0000 == 0);
    }
    assert_eq!(sizes, mdat.len(), "trun sample sizes cover mdat exactly");
    FragmentInfo {
        sequence,
        base_time,
        durations,
        sync,
        mdat_len: mdat.len(),
    }
}

/// The timescale of the single track of an init segment (`moov/trak/mdia/mdhd`).
pub fn init_timescale(init: &[u8]) -> u32 {
    let kinds: Vec<String> = boxes(init).into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, ["ftyp", "moov"], "init segment boxes");
    let mdhd = find(init, &["moov", "trak", "mdia", "mdhd"]).unwrap();
    if mdhd[0] == 1 {
        be32(mdhd, 20)
    } else {
        be32(mdhd, 12)
    }
}
