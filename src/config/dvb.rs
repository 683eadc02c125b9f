//! DVB cards (`[dvb.NAME]` tables in `config/headwater.toml`), Flussonic's card model. A card
//! tunes one multiplex; streams pick programs from it with `dvb://NAME?program=N`.

use serde::Deserialize;

/// How the multiplex reaches us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DvbHw {
    /// A Linux DVB adapter (`/dev/dvb/adapterN`), through GStreamer's `dvbsrc`.
    #[default]
    Dvb,
    /// The multiplex relayed as MPEG-TS over UDP (`device = "ADDR:PORT"`), e.g. by a
    /// DVB-to-IP gateway.
    Udp,
}

/// One card, as configured.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DvbCard {
    #[serde(default)]
    pub hw: DvbHw,
    #[serde(default)]
    pub adapter: u8,
    #[serde(default)]
    pub frontend: u8,
    /// `dvbt`, `dvbt2`, `dvbs`, `dvbs2`, `dvbc`, `atsc`, `isdbt`.
    pub system: Option<DvbSystem>,
    /// Hz (kHz for satellite systems, as the driver takes it).
    pub frequency: Option<u32>,
    /// kBd (DVB-S/S2, DVB-C).
    pub symbol_rate: Option<u32>,
    /// `v`, `h`, `l`, `r` (DVB-S/S2).
    pub polarization: Option<Polarization>,
    /// Flussonic's names: `qpsk`, `qam16` … `qam256`, `qam_auto`, `psk8`, `apsk16`, `apsk32`, `auto`.
    pub modulation: Option<Modulation>,
    /// Hz.
    pub bandwidth: Option<u32>,
    /// For `hw = "udp"`: `ADDR:PORT` of the relayed multiplex.
    pub device: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DvbSystem {
    Dvbt,
    Dvbt2,
    Dvbs,
    Dvbs2,
    Dvbc,
    Atsc,
    Isdbt,
}

impl DvbSystem {
    /// The `delsys` nick of GStreamer's `dvbsrc`.
    pub fn delsys(self) -> &'static str {
        match self {
            DvbSystem::Dvbt => "dvb-t",
            DvbSystem::Dvbt2 => "dvb-t2",
            DvbSystem::Dvbs => "dvb-s",
            DvbSystem::Dvbs2 => "dvb-s2",
            DvbSystem::Dvbc => "dvb-c-a",
            DvbSystem::Atsc => "atsc",
            DvbSystem::Isdbt => "isdb-t",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Polarization {
    V,
    H,
    L,
    R,
}

impl Polarization {
    pub fn as_str(self) -> &'static str {
        match self {
            Polarization::V => "V",
            Polarization::H => "H",
            Polarization::L => "L",
            Polarization::R => "R",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modulation {
    Qpsk,
    Qam16,
    Qam32,
    Qam64,
    Qam128,
    Qam256,
    #[serde(alias = "auto")]
    QamAuto,
    Psk8,
    Apsk16,
    Apsk32,
}

impl Modulation {
    /// The `modulation` nick of `dvbsrc`.
    pub fn nick(self) -> &'static str {
        match self {
            Modulation::Qpsk => "qpsk",
            Modulation::Qam16 => "qam-16",
            Modulation::Qam32 => "qam-32",
            Modulation::Qam64 => "qam-64",
            Modulation::Qam128 => "qam-128",
            Modulation::Qam256 => "qam-256",
            Modulation::QamAuto => "qam-auto",
            Modulation::Psk8 => "8psk",
            Modulation::Apsk16 => "16apsk",
            Modulation::Apsk32 => "32apsk",
        }
    }
}
