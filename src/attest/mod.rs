//! Attestation: turning evidence into a verified identity.
//!
//! Today the broker knows one kind of evidence, the one-time join token an
//! operator mints for one entry ([`join_token`]). A join token is an
//! operator's explicit grant: redeeming it yields the X509-SVID of the entry
//! it is bound to. Platform attestors (Kubernetes, OIDC, x509pop) come next
//! and yield selectors that are matched against entries.

pub mod join_token;
