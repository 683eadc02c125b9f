//! NVIDIA GPU figures through NVML, loaded at run time (`libnvidia-ml.so.1` via dlopen). No
//! library or no device means no GPU series at all, and `flussonic_gpu_available{reason} 0`
//! says why; the failure is logged once, when the stats thread starts.

use super::names;
use metrics::gauge;
use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use tracing::{info, warn};

/// Whether GPUs can be monitored, decided once.
#[derive(Debug)]
pub(super) enum GpuMonitor {
    Available(Box<Nvml>),
    /// Short machine-readable reason, used as the `reason` label.
    Unavailable(&'static str),
}

impl GpuMonitor {
    pub(super) fn detect() -> GpuMonitor {
        match Nvml::init() {
            Ok(nvml) => match nvml.device_count() {
                Ok(0) => {
                    info!("NVML loaded but reports no GPU");
                    GpuMonitor::Unavailable("no_devices")
                }
                Ok(n) => {
                    info!(gpus = n, "monitoring NVIDIA GPUs through NVML");
                    GpuMonitor::Available(Box::new(nvml))
                }
                Err(e) => {
                    warn!(error = %e, "NVML cannot count devices; GPU metrics disabled");
                    GpuMonitor::Unavailable("nvml_error")
                }
            },
            Err(nvml_wrapper::error::NvmlError::LibloadingError(e)) => {
                info!(reason = %e, "no NVIDIA driver (libnvidia-ml.so.1); GPU metrics disabled");
                GpuMonitor::Unavailable("no_driver")
            }
            Err(e) => {
                warn!(error = %e, "NVML failed to initialise; GPU metrics disabled");
                GpuMonitor::Unavailable("nvml_error")
            }
        }
    }

    /// Publishes one sample. Per-device read errors drop that device's series for this tick.
    pub(super) fn sample(&self) {
        match self {
            GpuMonitor::Unavailable(reason) => {
                gauge!(names::GPU_AVAILABLE, "reason" => *reason).set(0.0);
            }
            GpuMonitor::Available(nvml) => {
                gauge!(names::GPU_AVAILABLE, "reason" => "ok").set(1.0);
                let count = nvml.device_count().unwrap_or(0);
                for index in 0..count {
                    let Ok(device) = nvml.device_by_index(index) else {
                        continue;
                    };
                    let gpu = index.to_string();
                    if let Ok(u) = device.decoder_utilization() {
                        gauge!(names::GPU_DEC, "gpu" => gpu.clone()).set(f64::from(u.utilization));
                    }
                    if let Ok(u) = device.encoder_utilization() {
                        gauge!(names::GPU_ENC, "gpu" => gpu.clone()).set(f64::from(u.utilization));
                    }
                    if let Ok(t) = device.temperature(TemperatureSensor::Gpu) {
                        gauge!(names::GPU_TEMP, "gpu" => gpu).set(f64::from(t));
                    }
                }
            }
        }
    }
}
