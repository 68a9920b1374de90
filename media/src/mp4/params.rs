//! Video parameter sets: NAL units of an Annex B access unit, the picture size from an H.264 or
//! H.265 sequence parameter set, and the decoder configuration records (`avcC`, `hvcC`) an MP4
//! sample entry carries. Sans-IO; every parser takes untrusted bytes and answers an error,
//! never a panic.

use super::Mp4Error;

/// The NAL units of an Annex B buffer (start codes `00 00 01` or `00 00 00 01` removed).
pub fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    // SIMD search for start codes: every byte of every recorded frame passes here.
    for i in crate::ps::START_CODE.find_iter(data) {
        // Overlapping matches (`00 00 01` inside a start code just found) cannot occur: the
        // pattern has no self-overlap, so each match is a start code.
        if start.is_some_and(|s| i < s) {
            continue;
        }
        if let Some(s) = start {
            let mut end = i;
            // A four-byte start code's leading zero belongs to it, not to the NAL unit.
            while end > s && data[end - 1] == 0 {
                end -= 1;
            }
            if end > s {
                out.push(&data[s..end]);
            }
        }
        start = Some(i + 3);
    }
    if let Some(s) = start {
        if s < data.len() {
            out.push(&data[s..]);
        }
    }
    out
}

/// The RBSP of a NAL unit: emulation-prevention bytes (`00 00 03`) removed.
pub fn rbsp(nal: &[u8]) -> Vec<u8> {
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

/// A big-endian bit reader over an RBSP.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits { data, pos: 0 }
    }

    fn bit(&mut self) -> Result<u32, Mp4Error> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or(Mp4Error::BadParameterSet("truncated"))?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(u32::from(b))
    }

    fn bits(&mut self, n: u32) -> Result<u32, Mp4Error> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    fn skip(&mut self, n: usize) -> Result<(), Mp4Error> {
        if self.pos + n > self.data.len() * 8 {
            return Err(Mp4Error::BadParameterSet("truncated"));
        }
        self.pos += n;
        Ok(())
    }

    /// Unsigned Exp-Golomb.
    fn ue(&mut self) -> Result<u32, Mp4Error> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(Mp4Error::BadParameterSet("Exp-Golomb code too long"));
            }
        }
        if zeros == 0 {
            return Ok(0);
        }
        let rest = self.bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }

    /// Signed Exp-Golomb.
    fn se(&mut self) -> Result<i32, Mp4Error> {
        let k = self.ue()?;
        let v = k.div_ceil(2) as i32;
        Ok(if k % 2 == 1 { v } else { -v })
    }
}

/// What a sequence parameter set says about the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureSize {
    /// Width, pixels (after cropping).
    pub width: u32,
    /// Height, pixels (after cropping).
    pub height: u32,
}

fn h264_scaling_list(b: &mut Bits<'_>, size: usize) -> Result<(), Mp4Error> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            let delta = b.se()?;
            next = (last + delta + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// The picture size of an H.264 SPS NAL unit (header byte included).
pub fn h264_sps_size(nal: &[u8]) -> Result<PictureSize, Mp4Error> {
    if nal.first().map(|h| h & 0x1F) != Some(7) {
        return Err(Mp4Error::BadParameterSet("not an H.264 SPS"));
    }
    let r = rbsp(&nal[1..]);
    let mut b = Bits::new(&r);
    let profile_idc = b.bits(8)?;
    b.skip(16)?; // constraint flags, level_idc
    b.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = 0;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = b.ue()?;
        if chroma_format_idc > 3 {
            return Err(Mp4Error::BadParameterSet("chroma_format_idc out of range"));
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = b.bit()?;
        }
        b.ue()?; // bit_depth_luma_minus8
        b.ue()?; // bit_depth_chroma_minus8
        b.bit()?; // qpprime_y_zero_transform_bypass_flag
        if b.bit()? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if b.bit()? == 1 {
                    h264_scaling_list(&mut b, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    b.ue()?; // log2_max_frame_num_minus4
    match b.ue()? {
        0 => {
            b.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            b.bit()?;
            b.se()?;
            b.se()?;
            let n = b.ue()?;
            if n > 255 {
                return Err(Mp4Error::BadParameterSet(
                    "too many reference frames in cycle",
                ));
            }
            for _ in 0..n {
                b.se()?;
            }
        }
        _ => {}
    }
    b.ue()?; // max_num_ref_frames
    b.bit()?; // gaps_in_frame_num_value_allowed_flag
    let w_mbs = u64::from(b.ue()?) + 1;
    let h_map = u64::from(b.ue()?) + 1;
    let frame_mbs_only = u64::from(b.bit()?);
    if frame_mbs_only == 0 {
        b.bit()?; // mb_adaptive_frame_field_flag
    }
    b.bit()?; // direct_8x8_inference_flag
    let mut width = w_mbs * 16;
    let mut height = (2 - frame_mbs_only) * h_map * 16;
    if b.bit()? == 1 {
        let (l, r_, t, bo) = (
            u64::from(b.ue()?),
            u64::from(b.ue()?),
            u64::from(b.ue()?),
            u64::from(b.ue()?),
        );
        let (cx, cy) = if separate_colour_plane == 1 || chroma_format_idc == 0 {
            (1, 2 - frame_mbs_only)
        } else {
            let sub_w = if chroma_format_idc == 3 { 1 } else { 2 };
            let sub_h = if chroma_format_idc == 1 { 2 } else { 1 };
            (sub_w, sub_h * (2 - frame_mbs_only))
        };
        width = width.saturating_sub((l + r_) * cx);
        height = height.saturating_sub((t + bo) * cy);
    }
    size(width, height)
}

fn size(width: u64, height: u64) -> Result<PictureSize, Mp4Error> {
    if width == 0 || height == 0 || width > 16_384 || height > 16_384 {
        return Err(Mp4Error::BadParameterSet("picture size out of range"));
    }
    Ok(PictureSize {
        width: width as u32,
        height: height as u32,
    })
}

/// The general profile, tier and level of an H.265 VPS or SPS (12 bytes), and where the
/// sub-layer part after it ends, in bits.
fn h265_profile_tier_level(
    b: &mut Bits<'_>,
    max_sub_layers_minus1: u32,
) -> Result<[u8; 12], Mp4Error> {
    let mut general = [0u8; 12];
    for g in general.iter_mut() {
        *g = b.bits(8)? as u8;
    }
    let mut profile_present = [0u32; 8];
    let mut level_present = [0u32; 8];
    for i in 0..max_sub_layers_minus1 as usize {
        profile_present[i] = b.bit()?;
        level_present[i] = b.bit()?;
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            b.skip(2)?;
        }
    }
    for i in 0..max_sub_layers_minus1 as usize {
        if profile_present[i] == 1 {
            b.skip(88)?;
        }
        if level_present[i] == 1 {
            b.skip(8)?;
        }
    }
    Ok(general)
}

/// What an H.265 SPS gives an `hvcC` record and a sample entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H265Sps {
    /// Picture size after the conformance window.
    pub size: PictureSize,
    /// general_profile_space … general_level_idc, as coded (12 bytes).
    pub general_ptl: [u8; 12],
    /// chroma_format_idc.
    pub chroma_format_idc: u32,
    /// bit_depth_luma_minus8.
    pub bit_depth_luma_minus8: u32,
    /// bit_depth_chroma_minus8.
    pub bit_depth_chroma_minus8: u32,
    /// sps_max_sub_layers_minus1 + 1.
    pub sub_layers: u32,
    /// sps_temporal_id_nesting_flag.
    pub temporal_id_nesting: bool,
}

/// Parse an H.265 SPS NAL unit (two-byte header included).
pub fn h265_sps(nal: &[u8]) -> Result<H265Sps, Mp4Error> {
    if nal.len() < 3 || (nal[0] >> 1) & 0x3F != 33 {
        return Err(Mp4Error::BadParameterSet("not an H.265 SPS"));
    }
    let r = rbsp(&nal[2..]);
    let mut b = Bits::new(&r);
    b.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = b.bits(3)?;
    if max_sub_layers_minus1 > 6 {
        return Err(Mp4Error::BadParameterSet(
            "sps_max_sub_layers_minus1 out of range",
        ));
    }
    let nesting = b.bit()? == 1;
    let general_ptl = h265_profile_tier_level(&mut b, max_sub_layers_minus1)?;
    b.ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = b.ue()?;
    if chroma_format_idc > 3 {
        return Err(Mp4Error::BadParameterSet("chroma_format_idc out of range"));
    }
    if chroma_format_idc == 3 {
        b.bit()?; // separate_colour_plane_flag
    }
    let mut width = u64::from(b.ue()?);
    let mut height = u64::from(b.ue()?);
    if b.bit()? == 1 {
        let (l, r_, t, bo) = (
            u64::from(b.ue()?),
            u64::from(b.ue()?),
            u64::from(b.ue()?),
            u64::from(b.ue()?),
        );
        let sub_w = if chroma_format_idc == 1 || chroma_format_idc == 2 {
            2
        } else {
            1
        };
        let sub_h = if chroma_format_idc == 1 { 2 } else { 1 };
        width = width.saturating_sub((l + r_) * sub_w);
        height = height.saturating_sub((t + bo) * sub_h);
    }
    let bit_depth_luma_minus8 = b.ue()?;
    let bit_depth_chroma_minus8 = b.ue()?;
    if bit_depth_luma_minus8 > 8 || bit_depth_chroma_minus8 > 8 {
        return Err(Mp4Error::BadParameterSet("bit depth out of range"));
    }
    Ok(H265Sps {
        size: size(width, height)?,
        general_ptl,
        chroma_format_idc,
        bit_depth_luma_minus8,
        bit_depth_chroma_minus8,
        sub_layers: max_sub_layers_minus1 + 1,
        temporal_id_nesting: nesting,
    })
}

/// The `AVCDecoderConfigurationRecord` of an SPS and a PPS (ISO/IEC 14496-15 5.3.3.1).
pub fn avcc(sps: &[u8], pps: &[u8]) -> Result<Vec<u8>, Mp4Error> {
    if sps.len() < 4 || sps.len() > 0xFFFF || pps.is_empty() || pps.len() > 0xFFFF {
        return Err(Mp4Error::BadParameterSet("SPS or PPS size out of range"));
    }
    let mut v = vec![1, sps[1], sps[2], sps[3], 0xFF, 0xE1];
    v.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    v.extend_from_slice(sps);
    v.push(1);
    v.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    v.extend_from_slice(pps);
    if matches!(sps[1], 100 | 110 | 122 | 144) {
        // The high profiles' extension: chroma format and bit depths, no SPS extensions.
        let r = rbsp(&sps[1..]);
        let mut b = Bits::new(&r);
        b.skip(24)?;
        b.ue()?;
        let chroma = b.ue()?.min(3) as u8;
        let luma = b.ue()?.min(7) as u8;
        let chroma_depth = b.ue()?.min(7) as u8;
        v.extend_from_slice(&[0xFC | chroma, 0xF8 | luma, 0xF8 | chroma_depth, 0]);
    }
    Ok(v)
}

/// The `HEVCDecoderConfigurationRecord` of a VPS, an SPS and a PPS (ISO/IEC 14496-15 8.3.3.1).
pub fn hvcc(vps: &[u8], sps: &[u8], pps: &[u8]) -> Result<Vec<u8>, Mp4Error> {
    let s = h265_sps(sps)?;
    for n in [vps, sps, pps] {
        if n.len() < 3 || n.len() > 0xFFFF {
            return Err(Mp4Error::BadParameterSet("parameter set size out of range"));
        }
    }
    let mut v = vec![1];
    v.extend_from_slice(&s.general_ptl);
    v.extend_from_slice(&[0xF0, 0x00]); // min_spatial_segmentation_idc = 0
    v.push(0xFC); // parallelismType = 0
    v.push(0xFC | s.chroma_format_idc as u8);
    v.push(0xF8 | s.bit_depth_luma_minus8 as u8);
    v.push(0xF8 | s.bit_depth_chroma_minus8 as u8);
    v.extend_from_slice(&[0, 0]); // avgFrameRate unknown
                                  // constantFrameRate 0, numTemporalLayers, temporalIdNested, lengthSizeMinusOne = 3.
    v.push(((s.sub_layers as u8 & 7) << 3) | (u8::from(s.temporal_id_nesting) << 2) | 3);
    v.push(3);
    for (kind, n) in [(32u8, vps), (33, sps), (34, pps)] {
        v.push(0x80 | kind); // array_completeness = 1
        v.extend_from_slice(&1u16.to_be_bytes());
        v.extend_from_slice(&(n.len() as u16).to_be_bytes());
        v.extend_from_slice(n);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nal_units_split_on_three_and_four_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5,
        ];
        let n = nal_units(&data);
        assert_eq!(
            n,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]
        );
        assert!(nal_units(&[1, 2, 3]).is_empty());
        assert!(nal_units(&[]).is_empty());
    }

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(
            rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 3]
        );
    }

    #[test]
    fn h264_sps_sizes() {
        // x264, 640x360 High profile (crop 8 lines from 368).
        let sps = [
            0x67, 0x64, 0x00, 0x1E, 0xAC, 0xD9, 0x40, 0xA0, 0x2F, 0xF9, 0x70, 0x11, 0x00, 0x00,
            0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0F, 0x16, 0x2D, 0x96,
        ];
        assert_eq!(
            h264_sps_size(&sps).unwrap(),
            PictureSize {
                width: 640,
                height: 360
            }
        );
        let c = avcc(&sps, &[0x68, 0xEB, 0xE3, 0xCB, 0x22, 0xC0]).unwrap();
        assert_eq!(&c[..6], &[1, 0x64, 0x00, 0x1E, 0xFF, 0xE1]);
        assert_eq!(&c[c.len() - 4..], &[0xFD, 0xF8, 0xF8, 0]);
    }

    #[test]
    fn h265_sps_and_hvcc() {
        // x265, 1280x720 Main profile, level 3.1.
        let vps = [
            0x40, 0x01, 0x0C, 0x01, 0xFF, 0xFF, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00,
            0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x5D, 0x95, 0x98, 0x09,
        ];
        let sps = [
            0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
            0x00, 0x03, 0x00, 0x5D, 0xA0, 0x02, 0x80, 0x80, 0x2D, 0x16, 0x59, 0x59, 0xA4, 0x93,
            0x2B, 0xC0, 0x5A, 0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x32,
            0x10,
        ];
        let pps = [0x44, 0x01, 0xC1, 0x72, 0xB4, 0x62, 0x40];
        let s = h265_sps(&sps).unwrap();
        assert_eq!(
            s.size,
            PictureSize {
                width: 1280,
                height: 720
            }
        );
        assert_eq!(s.general_ptl[0], 0x01, "Main profile");
        assert_eq!(s.general_ptl[11], 93, "level 3.1");
        assert_eq!(s.chroma_format_idc, 1);
        let c = hvcc(&vps, &sps, &pps).unwrap();
        assert_eq!(c[0], 1);
        assert_eq!(&c[1..13], &s.general_ptl);
        assert_eq!(c[22], 3, "three arrays: VPS, SPS, PPS");
        assert_eq!(c.len(), 23 + 3 * 5 + vps.len() + sps.len() + pps.len());
    }

    #[test]
    fn bad_parameter_sets_are_errors() {
        assert!(h264_sps_size(&[]).is_err());
        assert!(h264_sps_size(&[0x67]).is_err());
        assert!(h264_sps_size(&[0x67, 0x64, 0, 0x1E, 0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        assert!(h264_sps_size(&[0x68, 1, 2, 3]).is_err());
        assert!(h265_sps(&[0x42, 0x01]).is_err());
        assert!(h265_sps(&[0x42, 0x01, 0x01, 0xFF]).is_err());
        assert!(avcc(&[0x67], &[0x68]).is_err());
    }

    #[test]
    fn parsers_never_panic_on_noise() {
        let mut x: u32 = 0x1234_5678;
        for len in 0..200 {
            let mut buf = Vec::with_capacity(len + 2);
            buf.push(0x67);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                buf.push(x as u8);
            }
            let _ = h264_sps_size(&buf);
            buf[0] = 0x42;
            buf.insert(1, 0x01);
            let _ = h265_sps(&buf);
        }
    }
}
