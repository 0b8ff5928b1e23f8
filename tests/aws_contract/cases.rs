//! The contract cases. Each is an `async fn(&Backend)`; `all_cases!` lists them.

use crate::backend::Backend;

/// Names every case, for `contract_suite!` to expand per backend.
macro_rules! all_cases {
    () => {
        $crate::contract_suite!(role_create_get_delete);
    };
}
pub(crate) use all_cases;

pub async fn role_create_get_delete(_b: &Backend) {
    // Filled in with the simulator.
}
