//! A slab with generations: an index plus generation names one occupant, so a completion that
//! arrives for a slot's previous occupant is recognised as stale and dropped.

pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

struct Slot<T> {
    /// 24 bits are carried in ring user data; it wraps there.
    gen: u32,
    val: Option<T>,
}

pub const GEN_MASK: u32 = 0x00ff_ffff;

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    pub fn insert(&mut self, val: T) -> (u32, u32) {
        self.len += 1;
        if let Some(i) = self.free.pop() {
            let s = &mut self.slots[i as usize];
            s.val = Some(val);
            (i, s.gen)
        } else {
            self.slots.push(Slot {
                gen: 0,
                val: Some(val),
            });
            ((self.slots.len() - 1) as u32, 0)
        }
    }

    pub fn get_mut(&mut self, idx: u32, gen: u32) -> Option<&mut T> {
        match self.slots.get_mut(idx as usize) {
            Some(s) if s.gen == gen => s.val.as_mut(),
            _ => None,
        }
    }

    pub fn get(&self, idx: u32, gen: u32) -> Option<&T> {
        match self.slots.get(idx as usize) {
            Some(s) if s.gen == gen => s.val.as_ref(),
            _ => None,
        }
    }

    pub fn remove(&mut self, idx: u32, gen: u32) -> Option<T> {
        let s = self.slots.get_mut(idx as usize)?;
        if s.gen != gen {
            return None;
        }
        let v = s.val.take()?;
        s.gen = (s.gen + 1) & GEN_MASK;
        self.free.push(idx);
        self.len -= 1;
        Some(v)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// (index, generation, value) of every occupant.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.val.as_ref().map(|v| (i as u32, s.gen, v)))
    }

    pub fn keys(&self) -> Vec<(u32, u32)> {
        self.iter().map(|(i, g, _)| (i, g)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_generation_is_refused() {
        let mut s = Slab::default();
        let (i, g) = s.insert("a");
        assert_eq!(s.remove(i, g), Some("a"));
        let (i2, g2) = s.insert("b");
        assert_eq!(i2, i, "slot not reused");
        assert_ne!(g2, g);
        assert!(s.get(i, g).is_none(), "old generation reached new occupant");
        assert_eq!(s.get(i2, g2), Some(&"b"));
        assert_eq!(s.len(), 1);
    }
}
