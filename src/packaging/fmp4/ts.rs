//! MPEG-TS layer: 188-byte packets, PAT/PMT, PES reassembly and PES headers.

use super::Fmp4Error;

const PACKET: usize = 188;
const SYNC: u8 = 0x47;
const STREAM_TYPE_H264: u8 = 0x1b;
const STREAM_TYPE_AAC_ADTS: u8 = 0x0f;

/// One reassembled PES packet; timestamps are raw 33-bit values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pes {
    pub(super) pts: Option<u64>,
    pub(super) dts: Option<u64>,
    pub(super) payload: Vec<u8>,
}

/// The PES packets of the chosen streams, in arrival order.
#[derive(Debug, Default)]
pub(super) struct Streams {
    pub(super) video: Vec<Pes>,
    /// `None` when the PMT has no AAC stream.
    pub(super) audio: Option<Vec<Pes>>,
}

/// Payload of one TS packet.
#[derive(Debug)]
struct Packet<'a> {
    pid: u16,
    unit_start: bool,
    payload: &'a [u8],
}

/// Is there a packet starting at `at` (sync byte, and the next one 188 bytes on unless at end)?
fn synced(ts: &[u8], at: usize) -> bool {
    if ts.get(at) != Some(&SYNC) {
        return false;
    }
    match at.checked_add(PACKET).and_then(|next| ts.get(next)) {
        Some(b) => *b == SYNC,
        None => true,
    }
}

/// Splits the buffer into packets, resyncing over garbage; errors if no sync at all.
fn packets(ts: &[u8]) -> Result<Vec<Packet<'_>>, Fmp4Error> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut found = false;
    while at < ts.len() {
        if !synced(ts, at) {
            at += 1;
            continue;
        }
        found = true;
        let Some(pkt) = ts.get(at..at + PACKET) else {
            break;
        };
        at += PACKET;
        if let Some(p) = parse_packet(pkt) {
            out.push(p);
        }
    }
    if !found {
        return Err(Fmp4Error::NoSync { len: ts.len() });
    }
    Ok(out)
}

fn parse_packet(pkt: &[u8]) -> Option<Packet<'_>> {
    let b1 = *pkt.get(1)?;
    let b2 = *pkt.get(2)?;
    let b3 = *pkt.get(3)?;
    if b1 & 0x80 != 0 {
        return None; // transport_error_indicator
    }
    let pid = (u16::from(b1 & 0x1f) << 8) | u16::from(b2);
    let afc = (b3 >> 4) & 3;
    if afc & 1 == 0 {
        return None; // no payload
    }
    let start = if afc & 2 != 0 {
        5 + usize::from(*pkt.get(4)?)
    } else {
        4
    };
    Some(Packet {
        pid,
        unit_start: b1 & 0x40 != 0,
        payload: pkt.get(start..)?,
    })
}

/// Section bytes of a PSI packet (after the pointer field), up to section_length; CRC kept.
fn section<'a>(p: &Packet<'a>) -> Option<&'a [u8]> {
    if !p.unit_start {
        return None;
    }
    let pointer = usize::from(*p.payload.first()?);
    let sec = p.payload.get(1 + pointer..)?;
    let len = usize::from(u16::from(*sec.get(1)? & 0x0f) << 8 | u16::from(*sec.get(2)?));
    sec.get(..3 + len)
}

/// First program's PMT PID from a PAT section.
fn pat_pmt_pid(sec: &[u8]) -> Option<u16> {
    if *sec.first()? != 0x00 {
        return None;
    }
    let body = sec.get(8..sec.len().checked_sub(4)?)?;
    body.chunks_exact(4).find_map(|e| {
        let program = u16::from_be_bytes([e[0], e[1]]);
        (program != 0).then(|| u16::from(e[2] & 0x1f) << 8 | u16::from(e[3]))
    })
}

/// (first H.264 PID, first AAC PID) from a PMT section.
fn pmt_streams(sec: &[u8]) -> Option<(Option<u16>, Option<u16>)> {
    if *sec.first()? != 0x02 {
        return None;
    }
    let info_len = usize::from(u16::from(*sec.get(10)? & 0x0f) << 8 | u16::from(*sec.get(11)?));
    let mut es = sec.get(12 + info_len..sec.len().checked_sub(4)?)?;
    let (mut video, mut audio) = (None, None);
    while let [stream_type, p1, p2, l1, l2, rest @ ..] = es {
        let pid = u16::from(p1 & 0x1f) << 8 | u16::from(*p2);
        match *stream_type {
            STREAM_TYPE_H264 if video.is_none() => video = Some(pid),
            STREAM_TYPE_AAC_ADTS if audio.is_none() => audio = Some(pid),
            _ => {}
        }
        let skip = usize::from(u16::from(l1 & 0x0f) << 8 | u16::from(*l2));
        es = rest.get(skip..).unwrap_or(&[]);
    }
    Some((video, audio))
}

/// Reads the 33-bit timestamp of a PTS/DTS field.
fn timestamp(b: &[u8]) -> Option<u64> {
    let [a, b, c, d, e] = *b.get(..5)? else {
        return None;
    };
    Some(
        u64::from((a >> 1) & 0x07) << 30
            | u64::from(b) << 22
            | u64::from(c >> 1) << 15
            | u64::from(d) << 7
            | u64::from(e >> 1),
    )
}

/// Parses a reassembled PES packet (header + payload).
fn parse_pes(pid: u16, data: &[u8]) -> Result<Pes, Fmp4Error> {
    let truncated = |needed: usize| Fmp4Error::TruncatedPes {
        pid,
        needed,
        got: data.len(),
    };
    let Some(head) = data.get(..9) else {
        return Err(truncated(9));
    };
    if head[..3] != [0, 0, 1] {
        return Err(Fmp4Error::BadPesStart { pid });
    }
    let declared = usize::from(u16::from_be_bytes([head[4], head[5]]));
    let end = if declared == 0 {
        data.len()
    } else if 6 + declared > data.len() {
        return Err(truncated(6 + declared));
    } else {
        6 + declared
    };
    let header_end = 9 + usize::from(head[8]);
    let Some(payload) = data.get(header_end..end) else {
        return Err(truncated(header_end));
    };
    let flags = head[7] >> 6;
    let field = |at: usize| data.get(at..header_end).and_then(timestamp);
    let pts = if flags & 2 != 0 { field(9) } else { None };
    let dts = if flags == 3 { field(14) } else { None };
    Ok(Pes {
        pts,
        dts: dts.or(pts),
        payload: payload.to_vec(),
    })
}

/// Collects PES bytes of one PID; bytes before the first unit start are dropped.
#[derive(Debug)]
struct Assembler {
    pid: u16,
    /// `Some` while a PES is open (after its unit-start packet).
    open: Option<Vec<u8>>,
    done: Vec<Pes>,
}

impl Assembler {
    fn new(pid: u16) -> Self {
        Assembler {
            pid,
            open: None,
            done: Vec::new(),
        }
    }

    fn push(&mut self, p: &Packet<'_>) -> Result<(), Fmp4Error> {
        if p.unit_start {
            self.flush()?;
            self.open = Some(p.payload.to_vec());
        } else if let Some(buf) = &mut self.open {
            buf.extend_from_slice(p.payload);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Fmp4Error> {
        if let Some(buf) = self.open.take() {
            self.done.push(parse_pes(self.pid, &buf)?);
        }
        Ok(())
    }
}

/// Finds the first program's H.264 and AAC streams and reassembles their PES packets.
pub(super) fn demux_pes(ts: &[u8]) -> Result<Streams, Fmp4Error> {
    let packets = packets(ts)?;
    let pmt_pid = packets
        .iter()
        .filter(|p| p.pid == 0)
        .find_map(|p| section(p).and_then(pat_pmt_pid))
        .ok_or(Fmp4Error::NoPat)?;
    let (video_pid, audio_pid) = packets
        .iter()
        .filter(|p| p.pid == pmt_pid)
        .find_map(|p| section(p).and_then(pmt_streams))
        .ok_or(Fmp4Error::NoPmt { pid: pmt_pid })?;
    let video_pid = video_pid.ok_or(Fmp4Error::NoVideoStream)?;
    let mut video = Assembler::new(video_pid);
    let mut audio = audio_pid.map(Assembler::new);
    for p in &packets {
        if p.pid == video_pid {
            video.push(p)?;
        } else if let Some(a) = audio.as_mut().filter(|a| a.pid == p.pid) {
            a.push(p)?;
        }
    }
    video.flush()?;
    if let Some(a) = &mut audio {
        a.flush()?;
    }
    Ok(Streams {
        video: video.done,
        audio: audio.map(|a| a.done),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_roundtrip() {
        // PTS 0x1_2345_6789 encoded with marker bits.
        let t: u64 = 0x1_2345_6789;
        let enc = [
            0x21 | (((t >> 30) as u8) << 1),
            (t >> 22) as u8,
            ((t >> 14) as u8) | 1,
            (t >> 7) as u8,
            ((t << 1) as u8) | 1,
        ];
        assert_eq!(timestamp(&enc), Some(t));
    }

    #[test]
    fn pes_with_pts_only_sets_dts() {
        let mut pes = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1];
        pes.extend_from_slice(&[0, 0, 0, 1, 9, 0xf0]);
        let p = parse_pes(0x41, &pes).unwrap();
        assert_eq!(p.pts, Some(0));
        assert_eq!(p.dts, Some(0));
        assert_eq!(p.payload, [0, 0, 0, 1, 9, 0xf0]);
    }

    #[test]
    fn truncated_pes_is_an_error() {
        let pes = [0, 0, 1, 0xc0, 0, 100, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1, 0xff];
        assert!(matches!(
            parse_pes(0x42, &pes),
            Err(Fmp4Error::TruncatedPes { pid: 0x42, .. })
        ));
        assert!(matches!(
            parse_pes(0x42, &[0, 0, 1]),
            Err(Fmp4Error::TruncatedPes { .. })
        ));
        assert!(matches!(
            parse_pes(0x42, &[1; 20]),
            Err(Fmp4Error::BadPesStart { .. })
        ));
    }

    #[test]
    fn no_sync_is_an_error() {
        assert!(matches!(
            demux_pes(&[0u8; 1000]),
            Err(Fmp4Error::NoSync { len: 1000 })
        ));
        assert!(matches!(demux_pes(&[]), Err(Fmp4Error::NoSync { .. })));
    }

    #[test]
    fn resyncs_over_garbage() {
        let seg = include_bytes!("../../../tests/fixtures/fmp4/seg0.ts");
        let mut junk = vec![0x47, 1, 2, 3, 4];
        junk.extend_from_slice(seg);
        let clean = demux_pes(seg).unwrap();
        let dirty = demux_pes(&junk).unwrap();
        assert_eq!(clean.video, dirty.video);
        assert_eq!(clean.audio, dirty.audio);
    }
}
