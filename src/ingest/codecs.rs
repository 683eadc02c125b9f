//! Which decoder and encoder a transcoded stream uses: `hw = auto | nvenc | cpu` against the
//! elements this host really has. Detection asks the element registry through a small trait
//! so the rules are tested with a fake registry; the real one is GStreamer's.

use crate::config::transcoder::{DeviceId, Hw};
use std::fmt;

/// Software H.264 decoder (gst-libav).
pub const CPU_DECODER: &str = "avdec_h264";
/// Software H.264 encoder (gst-plugins-ugly).
pub const CPU_ENCODER: &str = "x264enc";

/// What can be asked of an element registry.
pub trait ElementRegistry {
    /// True when an element factory of this name can be made here.
    fn has(&self, factory: &str) -> bool;
    /// The CUDA device an NVIDIA element works on (its `cuda-device-id`), when it says.
    fn cuda_device(&self, factory: &str) -> Option<u32>;
}

/// GStreamer's registry. `nvcodec` registers its elements only when CUDA and a device are
/// present, so a factory lookup is the device check (the plugin file alone proves nothing).
#[derive(Debug, Clone, Copy, Default)]
pub struct GstRegistry;

impl ElementRegistry for GstRegistry {
    fn has(&self, factory: &str) -> bool {
        gstreamer::ElementFactory::find(factory).is_some()
    }

    fn cuda_device(&self, factory: &str) -> Option<u32> {
        use gstreamer::prelude::*;
        let element = gstreamer::ElementFactory::make(factory).build().ok()?;
        if !element.has_property("cuda-device-id") {
            return None;
        }
        let value = element.property_value("cuda-device-id");
        value
            .get::<u32>()
            .ok()
            .or_else(|| value.get::<i32>().ok().and_then(|v| u32::try_from(v).ok()))
    }
}

/// Most NVIDIA devices looked at.
const MAX_NV_DEVICES: u32 = 16;

/// The nvcodec element of `kind` (`dec` or `enc`) that works on CUDA device `id`, if any.
///
/// nvcodec (GStreamer 1.22) names the first device it registers an element for `nvh264enc`
/// and the following ones `nvh264device1enc`, `nvh264device2enc`… in registration order, which
/// is not the CUDA device id when a device lacks the engine (an H100 has no NVENC). So each
/// candidate's `cuda-device-id` decides; only an element that does not say is matched by its
/// name's position.
pub fn nv_element(registry: &dyn ElementRegistry, kind: &str, id: DeviceId) -> Option<String> {
    let names = std::iter::once(format!("nvh264{kind}"))
        .chain((1..MAX_NV_DEVICES).map(|n| format!("nvh264device{n}{kind}")));
    let mut by_position = None;
    for (position, name) in names.enumerate() {
        if !registry.has(&name) {
            continue;
        }
        match registry.cuda_device(&name) {
            Some(device) if device == id.0 => return Some(name),
            Some(_) => {}
            None if position as u32 == id.0 => by_position = Some(name),
            None => {}
        }
    }
    by_position
}

/// The chosen decoder and encoder of one transcoded stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecChoice {
    /// Factory name of the H.264 decoder (`nvh264dec` or `avdec_h264`).
    pub decoder: String,
    /// Factory name of the H.264 encoder (`nvh264enc` or `x264enc`).
    pub encoder: String,
}

impl CodecChoice {
    /// True when the encoder runs on the GPU.
    pub fn nvenc(&self) -> bool {
        self.encoder.starts_with("nvh264")
    }
    /// True when the decoder runs on the GPU.
    pub fn nvdec(&self) -> bool {
        self.decoder.starts_with("nvh264")
    }
    /// The `hw` label shown in logs, JSON and metrics: where the work runs.
    pub fn hw_label(&self) -> &'static str {
        match (self.nvdec(), self.nvenc()) {
            (_, true) => "nvenc",
            (true, false) => "nvdec",
            (false, false) => "cpu",
        }
    }
}

impl fmt::Display for CodecChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {}", self.decoder, self.encoder)
    }
}

/// Why no codec pair could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error(
        "hw = \"nvenc\" but no {encoder} works on CUDA device {device} (no NVIDIA GPU there, no \
         CUDA driver, or a GPU without NVENC such as H100/A100); refusing to fall back to the CPU"
    )]
    NvencUnavailable { encoder: String, device: u32 },
    #[error("GStreamer element {0} is missing (install the package that provides it)")]
    Missing(String),
}

/// Chooses the decoder and encoder for `hw` on GPU `device`.
///
/// - `cpu`: `avdec_h264` → `x264enc`, both required.
/// - `nvenc`: the NVENC encoder is required (an error, never a silent fallback); the decoder is
///   NVDEC when present, else software.
/// - `auto`: each of decoder and encoder on the GPU when its element exists, else software.
pub fn choose(
    hw: Hw,
    device: DeviceId,
    registry: &dyn ElementRegistry,
) -> Result<CodecChoice, CodecError> {
    let nv_dec = nv_element(registry, "dec", device);
    let nv_enc = nv_element(registry, "enc", device);
    let require = |name: &str| -> Result<String, CodecError> {
        if registry.has(name) {
            Ok(name.to_owned())
        } else {
            Err(CodecError::Missing(name.to_owned()))
        }
    };
    let prefer = |gpu: &Option<String>, cpu: &str| -> Result<String, CodecError> {
        match gpu {
            Some(gpu) => Ok(gpu.clone()),
            None => require(cpu),
        }
    };
    match hw {
        Hw::Cpu => Ok(CodecChoice {
            decoder: require(CPU_DECODER)?,
            encoder: require(CPU_ENCODER)?,
        }),
        Hw::Nvenc => {
            let Some(encoder) = nv_enc else {
                return Err(CodecError::NvencUnavailable {
                    encoder: "nvh264enc".into(),
                    device: device.0,
                });
            };
            Ok(CodecChoice {
                decoder: prefer(&nv_dec, CPU_DECODER)?,
                encoder,
            })
        }
        Hw::Auto => Ok(CodecChoice {
            decoder: prefer(&nv_dec, CPU_DECODER)?,
            encoder: prefer(&nv_enc, CPU_ENCODER)?,
        }),
    }
}

/// Rewrites an encoder failure so that NVENC's per-GPU session limit (consumer GeForce cards
/// allow only a few concurrent encode sessions) is named instead of a bare driver error.
pub fn explain_encoder_error(element_kind: &str, message: &str) -> Option<String> {
    let nvenc = element_kind.to_ascii_lowercase().contains("nvh264")
        || element_kind.contains("NvH264")
        || element_kind.contains("NvEnc");
    if !nvenc {
        return None;
    }
    let m = message.to_ascii_lowercase();
    let limit = [
        "session",
        "out of memory",
        "out_of_memory",
        "incompatible client key",
        "nv_enc_err_out_of_memory",
        "failed to open encode session",
        "could not open",
        "failed to initialize",
        "could not initialize",
    ]
    .iter()
    .any(|p| m.contains(p));
    limit.then(|| {
        format!(
            "NVENC could not open an encode session ({message}): the GPU's concurrent NVENC \
             session limit is probably reached (consumer GeForce cards allow a few sessions per \
             system; each rendition uses one)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// A registry holding exactly the listed factories; NVIDIA ones say their CUDA device
    /// when listed in `devices`.
    struct Fake(HashSet<&'static str>, Vec<(&'static str, u32)>);

    impl ElementRegistry for Fake {
        fn has(&self, factory: &str) -> bool {
            self.0.contains(factory)
        }
        fn cuda_device(&self, factory: &str) -> Option<u32> {
            self.1.iter().find(|(f, _)| *f == factory).map(|(_, d)| *d)
        }
    }

    fn fake(names: &[&'static str]) -> Fake {
        Fake(names.iter().copied().collect(), Vec::new())
    }

    const CPU: &[&str] = &["avdec_h264", "x264enc"];
    const NVDEC_ONLY: &[&str] = &["avdec_h264", "x264enc", "nvh264dec"]; // H100/H200
    const FULL_GPU: &[&str] = &["avdec_h264", "x264enc", "nvh264dec", "nvh264enc"];

    fn pair(d: &str, e: &str) -> CodecChoice {
        CodecChoice {
            decoder: d.into(),
            encoder: e.into(),
        }
    }

    #[test]
    fn auto_uses_what_exists() {
        let dev = DeviceId(0);
        assert_eq!(
            choose(Hw::Auto, dev, &fake(CPU)),
            Ok(pair("avdec_h264", "x264enc"))
        );
        let mixed = choose(Hw::Auto, dev, &fake(NVDEC_ONLY)).unwrap();
        assert_eq!(mixed, pair("nvh264dec", "x264enc"));
        assert_eq!(mixed.hw_label(), "nvdec");
        let gpu = choose(Hw::Auto, dev, &fake(FULL_GPU)).unwrap();
        assert_eq!(gpu, pair("nvh264dec", "nvh264enc"));
        assert_eq!(gpu.hw_label(), "nvenc");
        assert_eq!(choose(Hw::Auto, dev, &fake(CPU)).unwrap().hw_label(), "cpu");
    }

    #[test]
    fn nvenc_without_an_encoder_is_an_error_never_a_fallback() {
        for names in [CPU, NVDEC_ONLY, &[][..]] {
            let err = choose(Hw::Nvenc, DeviceId(0), &fake(names)).unwrap_err();
            assert_eq!(
                err,
                CodecError::NvencUnavailable {
                    encoder: "nvh264enc".into(),
                    device: 0
                }
            );
            assert!(err.to_string().contains("refusing to fall back"));
        }
        assert_eq!(
            choose(Hw::Nvenc, DeviceId(0), &fake(FULL_GPU)),
            Ok(pair("nvh264dec", "nvh264enc"))
        );
        // NVENC present but no NVDEC: software decode feeds the GPU encoder.
        assert_eq!(
            choose(Hw::Nvenc, DeviceId(0), &fake(&["avdec_h264", "nvh264enc"])),
            Ok(pair("avdec_h264", "nvh264enc"))
        );
    }

    #[test]
    fn cpu_never_touches_the_gpu_and_needs_its_elements() {
        assert_eq!(
            choose(Hw::Cpu, DeviceId(0), &fake(FULL_GPU)),
            Ok(pair("avdec_h264", "x264enc"))
        );
        assert_eq!(
            choose(Hw::Cpu, DeviceId(0), &fake(&["avdec_h264"])),
            Err(CodecError::Missing("x264enc".into()))
        );
        assert_eq!(
            choose(Hw::Auto, DeviceId(0), &fake(&["x264enc"])),
            Err(CodecError::Missing("avdec_h264".into()))
        );
    }

    #[test]
    fn second_gpu_uses_its_own_element_names() {
        let names = &["avdec_h264", "x264enc", "nvh264enc", "nvh264device1dec"];
        assert_eq!(
            choose(Hw::Auto, DeviceId(1), &fake(names)),
            Ok(pair("nvh264device1dec", "x264enc"))
        );
        assert!(matches!(
            choose(Hw::Nvenc, DeviceId(1), &fake(names)),
            Err(CodecError::NvencUnavailable { device: 1, .. })
        ));
    }

    #[test]
    fn elements_are_matched_by_their_cuda_device_not_their_name() {
        // GPU 0 is an H100 (NVDEC only), GPU 1 has NVENC: nvcodec names GPU 1's encoder
        // `nvh264enc` because it is the first encoder it registers.
        let registry = Fake(
            [
                "avdec_h264",
                "x264enc",
                "nvh264dec",
                "nvh264device1dec",
                "nvh264enc",
            ]
            .into_iter()
            .collect(),
            vec![("nvh264dec", 0), ("nvh264device1dec", 1), ("nvh264enc", 1)],
        );
        assert_eq!(
            choose(Hw::Nvenc, DeviceId(1), &registry),
            Ok(pair("nvh264device1dec", "nvh264enc"))
        );
        assert!(matches!(
            choose(Hw::Nvenc, DeviceId(0), &registry),
            Err(CodecError::NvencUnavailable { device: 0, .. })
        ));
        assert_eq!(
            choose(Hw::Auto, DeviceId(0), &registry),
            Ok(pair("nvh264dec", "x264enc"))
        );
    }

    #[test]
    fn this_host_has_the_software_pair() {
        gstreamer::init().unwrap();
        let choice = choose(Hw::Cpu, DeviceId(0), &GstRegistry).unwrap();
        assert_eq!(choice, pair("avdec_h264", "x264enc"));
        // Whatever auto picks here is backed by real factories.
        let auto = choose(Hw::Auto, DeviceId(0), &GstRegistry).unwrap();
        assert!(GstRegistry.has(&auto.decoder) && GstRegistry.has(&auto.encoder));
    }

    #[test]
    fn nvenc_session_errors_name_the_limit() {
        let msg = explain_encoder_error("GstNvH264Enc", "Failed to open encode session")
            .expect("explained");
        assert!(msg.contains("session limit"), "{msg}");
        assert!(explain_encoder_error("GstNvH264Enc", "not negotiated").is_none());
        assert!(explain_encoder_error("GstX264Enc", "out of memory").is_none());
    }
}
