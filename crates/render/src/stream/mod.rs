//! The render stream without its socket (the HTTP door serves the socket): the wire format
//! ([`protocol`]), a session's view state ([`view`]) and a series' geometry ([`series`]).

pub mod protocol;
pub mod series;
pub mod view;

pub use protocol::{
    frame_size, place, preset_window, ClientMessage, Header, MprSpec, OpenSeries, Play, Rotation,
    SlabSpec, ViewChange, CINE_DEFAULT_FPS, CINE_MAX_FPS, CINE_MIN_FPS, FLAG_KEYFRAME, FLAG_RGB,
    HEADER_LEN, KIND_FRAME, KIND_STILL, MAX_IN_FLIGHT, PRESETS, STILL_AFTER,
};
pub use series::{open_series, OpenedSeries, SeriesInstance, Slice};
pub use view::{ViewState, WindowChoice};
