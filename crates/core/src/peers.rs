//! Connections counted per client address, so that one host (a misbehaving modality, a
//! slowloris client) cannot take every slot of a door. Both doors use it: HTTP for its
//! connections, DIMSE for its associations.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// How many connections each address holds now.
#[derive(Default)]
pub struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in a [`PerAddress`] table, given back when dropped.
pub struct AddressHold {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    /// A place for one more connection from `ip`, if it holds fewer than `max`.
    pub fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressHold> {
        let mut table = self.0.lock().expect("connection table");
        let n = table.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressHold {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for AddressHold {
    fn drop(&mut self) {
        let mut table = self.table.0.lock().expect("connection table");
        if let Some(n) = table.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                table.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_share_and_gets_places_back() {
        let table = Arc::new(PerAddress::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = table.take(a, 2).unwrap();
        let _second = table.take(a, 2).unwrap();
        assert!(table.take(a, 2).is_none(), "a third from one address");
        assert!(
            table.take(b, 2).is_some(),
            "another address is not affected"
        );
        drop(first);
        assert!(
            table.take(a, 2).is_some(),
            "a place given back is free again"
        );
    }
}
