use crate::error::Result;
use crate::state::Home;

pub fn run(home: &Home, deployment: &str, json: bool) -> Result<i32> {
    let state = home.load_existing(deployment)?;
    if json {
        super::print_json(&state.outputs);
    } else {
        for (k, v) in &state.outputs {
            println!("{k} = {v}");
        }
    }
    Ok(0)
}
