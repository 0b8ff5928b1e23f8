//! One contract suite for the AWS layer, written once and run against every backend:
//! the in-memory simulator, and the SDK adapters against moto (IAM) and ministack (EKS
//! Pod Identity). Every case asserts on every backend: the simulator is held to AWS's
//! documented answers, and where moto or ministack answers otherwise the case asserts
//! that server's answer as `known_differences` records it.

#[path = "../support/aws_servers.rs"]
mod aws_servers;

mod addons;
mod authorization;
mod backend;
mod cases;
mod known_differences;
// Each backend module provides `pub async fn start() -> backend::Backend`, is declared
// here with `mod module;`, and ends with `crate::cases::all_cases!();`, which puts one
// test per case in its `contract` submodule (a macro invoked here could not declare a
// second module of the backend's name next to the file module).
mod sim_backend;
mod wire_backend;

/// Expands every case of `cases` into one `#[tokio::test]` in a `contract` module, to be
/// invoked inside a backend module that defines `start()`.
macro_rules! contract_suite {
    ($($case:ident),+ $(,)?) => {
        mod contract {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = super::start().await;
                    crate::cases::$case(&backend).await;
                }
            )+
        }
    };
}
pub(crate) use contract_suite;
