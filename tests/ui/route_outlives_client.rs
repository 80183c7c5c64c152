//! A route borrows its client: the device cannot go away (or be re-created at another function) while the route lives.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (cmb, _) = setup();
    let route;
    {
        let nvme = nvme();
        route = Route::same_device(&cmb, &nvme);
    }
    let _ = route;
}
