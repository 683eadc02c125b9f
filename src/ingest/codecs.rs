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
}

/// GStreamer's registry. `nvcodec` registers its elements only when CUDA and a device are
/// present, so a factory lookup is the device check (the plugin file alone proves nothing).
#[derive(Debug, Clone, Copy, Default)]
pub struct GstRegistry;

impl ElementRegistry for GstRegistry {
    fn has(&self, factory: &str) -> bool {
        gstreamer::ElementFactory::find(factory).is_some()
    }
}

/// The NVIDIA element names nvcodec registers for CUDA device `id` (GStreamer 1.22: the
/// first device gets the plain names, others `nvh264deviceNdec`/`…enc`).
pub fn nv_elements(id: DeviceId) -> (String, String) {
    match id.0 {
        0 => ("nvh264dec".into(), "nvh264enc".into()),
        n => (format!("nvh264device{n}dec"), format!("nvh264device{n}enc")),
    }
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
        "hw = \"nvenc\" but {encoder} is not available (no NVIDIA GPU {device}, no CUDA driver, \
         or a GPU without NVENC such as H100/A100); refusing to fall back to the CPU"
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
    let (nv_dec, nv_enc) = nv_elements(device);
    let require = |name: &str| -> Result<String, CodecError> {
        if registry.has(name) {
            Ok(name.to_owned())
        } else {
            Err(CodecError::Missing(name.to_owned()))
        }
    };
    let prefer = |gpu: &str, cpu: &str| -> Result<String, CodecError> {
        if registry.has(gpu) {
            Ok(gpu.to_owned())
        } else {
            require(cpu)
        }
    };
    match hw {
        Hw::Cpu => Ok(CodecChoice {
            decoder: require(CPU_DECODER)?,
            encoder: require(CPU_ENCODER)?,
        }),
        Hw::Nvenc => {
            if !registry.has(&nv_enc) {
                return Err(CodecError::NvencUnavailable {
                    encoder: nv_enc,
                    device: device.0,
                });
            }
            Ok(CodecChoice {
                decoder: prefer(&nv_dec, CPU_DECODER)?,
                encoder: nv_enc,
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

    /// A registry holding exactly the listed factories.
    struct Fake(HashSet<&'static str>);

    impl ElementRegistry for Fake {
        fn has(&self, factory: &str) -> bool {
            self.0.contains(factory)
        }
    }

    fn fake(names: &[&'static str]) -> Fake {
        Fake(names.iter().copied().collect())
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
