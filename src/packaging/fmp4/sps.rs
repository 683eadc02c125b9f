//! Minimal H.264 sequence parameter set reader: picture size and chroma format.

/// What the packager needs from an SPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SpsInfo {
    pub(super) profile_idc: u8,
    pub(super) chroma_format_idc: u32,
    pub(super) bit_depth_luma_minus8: u32,
    pub(super) bit_depth_chroma_minus8: u32,
    /// Display width after cropping.
    pub(super) width: u32,
    /// Display height after cropping.
    pub(super) height: u32,
}

/// Reads bits MSB-first from an RBSP (emulation prevention bytes already removed).
#[derive(Debug)]
struct Bits {
    data: Vec<u8>,
    /// Index of the next bit; never beyond `data.len() * 8` once a read succeeded.
    pos: usize,
}

impl Bits {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(bit))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some((acc << 1) | self.bit()?))
    }

    /// Unsigned Exp-Golomb; `None` past the end or beyond 31 leading zeros.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0u32;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        ((1u64 << zeros) - 1 + u64::from(rest)).try_into().ok()
    }

    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// Removes emulation prevention bytes (00 00 03 → 00 00).
fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

fn skip_scaling_list(r: &mut Bits, size: u32) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Parses an SPS NAL unit (header byte included); `None` if malformed or truncated.
pub(super) fn parse(nal: &[u8]) -> Option<SpsInfo> {
    let mut r = Bits {
        data: rbsp(nal.get(1..)?),
        pos: 0,
    };
    let profile_idc = u8::try_from(r.bits(8)?).ok()?;
    r.bits(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let (mut chroma_format_idc, mut separate_planes) = (1, false);
    let (mut depth_luma, mut depth_chroma) = (0, 0);
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_planes = r.bit()? == 1;
        }
        depth_luma = r.ue()?;
        depth_chroma = r.ue()?;
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()? {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()?.checked_add(1)?;
    let height_map_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let crop = if r.bit()? == 1 {
        [r.ue()?, r.ue()?, r.ue()?, r.ue()?]
    } else {
        [0; 4]
    };
    let chroma_array_type = if separate_planes {
        0
    } else {
        chroma_format_idc
    };
    let (sub_w, sub_h) = match chroma_array_type {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let field_factor = 2 - frame_mbs_only;
    let (unit_x, unit_y): (u32, u32) = if chroma_array_type == 0 {
        (1, field_factor)
    } else {
        (sub_w, sub_h * field_factor)
    };
    let width = width_mbs
        .checked_mul(16)?
        .checked_sub(unit_x.checked_mul(crop[0].checked_add(crop[1])?)?)?;
    let height = height_map_units
        .checked_mul(16 * field_factor)?
        .checked_sub(unit_y.checked_mul(crop[2].checked_add(crop[3])?)?)?;
    Some(SpsInfo {
        profile_idc,
        chroma_format_idc,
        bit_depth_luma_minus8: depth_luma,
        bit_depth_chroma_minus8: depth_chroma,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fixture_sps() {
        let seg = include_bytes!("../../../tests/fixtures/fmp4/seg0.ts");
        let d = super::super::demux(seg).unwrap();
        let info = parse(&d.avc.unwrap().sps).unwrap();
        assert_eq!((info.width, info.height), (160, 90));
        assert_eq!((info.profile_idc, info.chroma_format_idc), (100, 1));
        assert_eq!(
            (info.bit_depth_luma_minus8, info.bit_depth_chroma_minus8),
            (0, 0)
        );
    }

    #[test]
    fn mutated_sps_never_panics() {
        let seg = include_bytes!("../../../tests/fixtures/fmp4/seg0.ts");
        let sps = super::super::demux(seg).unwrap().avc.unwrap().sps;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for round in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut bad = sps.clone();
            let at = (seed % bad.len() as u64) as usize;
            bad[at] = (seed >> 32) as u8;
            bad.truncate(bad.len() - round % bad.len());
            let _ = parse(&bad);
        }
    }

    #[test]
    fn garbage_sps_is_none() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0x67, 0x64]), None);
        assert_eq!(parse(&[0x67, 0x64, 0, 0x1f, 0, 0, 0, 0, 0, 0]), None);
    }
}
