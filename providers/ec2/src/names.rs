//! Node names travel in the launch call's tags: one RunInstances per group wave gives every
//! instance the same tags, so the wave carries the list of its names (`3-5,9`) and each instance
//! takes the name at its launch index. No per-instance CreateTags call is needed, and a run killed
//! right after RunInstances leaves instances that the next run can name and adopt.

/// Encodes sorted indexes as ranges: [3,4,5,9] -> "3-5,9".
pub fn encode(indexes: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indexes.len() {
        let start = indexes[i];
        let mut end = start;
        while i + 1 < indexes.len() && indexes[i + 1] == end + 1 {
            i += 1;
            end = indexes[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

pub fn decode(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 10_000 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// Splits `group-N` names into waves whose encoded index list fits an EC2 tag value (256 chars).
pub fn waves(indexes: &[u32]) -> Vec<Vec<u32>> {
    let mut waves: Vec<Vec<u32>> = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    for &i in indexes {
        current.push(i);
        if encode(&current).len() > 240 {
            current.pop();
            waves.push(std::mem::take(&mut current));
            current.push(i);
        }
    }
    if !current.is_empty() {
        waves.push(current);
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip() {
        let v = vec![1, 2, 3, 7, 9, 10];
        assert_eq!(encode(&v), "1-3,7,9-10");
        assert_eq!(decode("1-3,7,9-10"), Some(v));
        assert_eq!(decode("5-2"), None);
        assert_eq!(decode("x"), None);
    }

    #[test]
    fn long_lists_split_into_waves_that_fit_a_tag() {
        let scattered: Vec<u32> = (1..400).map(|i| i * 3).collect();
        let w = waves(&scattered);
        assert!(w.len() > 1);
        assert!(w.iter().all(|x| encode(x).len() <= 240));
        assert_eq!(w.concat(), scattered);
        assert_eq!(
            waves(&(1..=1000).collect::<Vec<_>>()).len(),
            1,
            "consecutive names are one wave"
        );
    }
}
