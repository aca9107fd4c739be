//! Pure decisions and parsing: no machine access happens here. Each module takes plain data and
//! returns decision types, with table tests at the bottom.

pub mod artifact;
pub mod containers;
pub mod daemon;
pub mod deb822;
pub mod identity;
pub mod layout;
pub mod platform;
pub mod release;
pub mod repair;
pub mod shell;
pub mod unit;
pub mod version;
