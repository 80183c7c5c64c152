//! A route borrows its provider: the provider cannot go away (or be re-published at another BAR) while the route lives.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let nvme = nvme();
    let route;
    {
        let (cmb, _) = setup();
        route = Route::same_device(&cmb, &nvme);
    }
    let _ = route;
}
