//! One contract suite for the AWS layer, written once and run against every backend:
//! the in-memory simulator, and the SDK adapters against moto (IAM) and ministack (EKS
//! Pod Identity). A case that a wire server is laxer than AWS about says so and checks
//! the simulator against AWS's documented behaviour instead.

mod backend;
mod cases;
// Each backend module provides `pub async fn start() -> backend::Backend` and is
// listed here with `cases::all_cases!(module);`.

/// Expands every case of `cases` into one `#[tokio::test]` per backend module.
macro_rules! contract_suite {
    ($backend:ident: $($case:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = crate::$backend::start().await;
                    crate::cases::$case(&backend).await;
                }
            )+
        }
    };
}
pub(crate) use contract_suite;
