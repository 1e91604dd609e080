//! The account state the policies see: accounts, environments, integrations,
//! users, grants, invitations, service accounts, vendor entries.

/// The SQL that creates the state tables; run by the store's migrations.
pub const SCHEMA_V1: &str = "";
