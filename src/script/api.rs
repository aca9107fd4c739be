//! The primitive API version this `cai` provides. Scripts declare the version they need
//! (`//! api: 1`); the primitives themselves are documented by their registrations in
//! [`super::bind`], which `cai scripts api` lists.

/// Minor versions add primitives; a major version would change or remove one.
pub const API_VERSION: semver::Version = semver::Version::new(1, 0, 0);
