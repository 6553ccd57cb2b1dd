//! The lexers formats share: the one-line mapping scanner (Python dict reprs and JSON),
//! the tqdm bar, numbers, percentages and durations. Pure functions over `&str`; a format
//! calls them, they know no format.

pub mod mapping;
pub mod number;
pub mod tqdm;
