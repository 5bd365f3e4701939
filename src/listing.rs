//! Listings that page through items in key order: the admin API's
//! `ListEntries` (entries by id) and `ListRevocations` (revocations by
//! `kind:value`).
//!
//! A page starts after the key the previous one stopped at, never at an
//! offset, so items created or deleted between two pages do not shift the
//! others: every item that exists throughout a listing is listed exactly
//! once, and one created or deleted meanwhile at most once. [`PageFill`]
//! collects one page from items offered in key order and remembers where
//! the next page starts; `api::paging` turns that key into the opaque token
//! clients pass back.

use std::ops::ControlFlow;

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items on it, in key order.
    pub items: Vec<T>,
    /// The key of the last item looked at, when more follow: the next page
    /// starts after it. `None` on the last page.
    pub resume_after: Option<String>,
}

/// Collects one page from the items of a listing offered in key order,
/// matching its filters or not.
///
/// The page is complete when it holds `limit` items or `budget` items were
/// looked at, whichever comes first: the budget bounds the work of one call
/// when a narrow filter passes over many items, at the price of a page
/// shorter than `limit` (even empty) before the end. A page ends only when
/// another item exists, so the last page says it is the last one instead of
/// leaving an empty page to fetch.
#[derive(Debug)]
pub struct PageFill<T> {
    page: Page<T>,
    limit: usize,
    budget: usize,
    looked_at: usize,
    last_key: Option<String>,
}

impl<T> PageFill<T> {
    /// A fill of at most `limit` items, looking at most at `budget` items;
    /// both are at least 1, so that every page moves the listing on.
    pub fn new(limit: usize, budget: usize) -> Self {
        PageFill {
            page: Page {
                items: Vec::new(),
                resume_after: None,
            },
            limit: limit.max(1),
            budget: budget.max(1),
            looked_at: 0,
            last_key: None,
        }
    }

    /// Offers the next item in key order, `Some` if it passes the
    /// listing's filters. `Break` when the page is complete: this item was
    /// not looked at, and the next page starts with it.
    pub fn offer(&mut self, key: &str, item: Option<T>) -> ControlFlow<()> {
        if self.page.items.len() >= self.limit || self.looked_at >= self.budget {
            self.page.resume_after = self.last_key.take();
            return ControlFlow::Break(());
        }
        self.looked_at += 1;
        match &mut self.last_key {
            Some(last) => {
                last.clear();
                last.push_str(key);
            }
            None => self.last_key = Some(key.to_owned()),
        }
        self.page.items.extend(item);
        ControlFlow::Continue(())
    }

    /// How many more items could still go on the page, plus the one that
    /// tells whether more follow: what a reader fetching items in batches
    /// should ask for.
    pub fn wanted(&self) -> usize {
        self.limit
            .saturating_sub(self.page.items.len())
            .saturating_add(1)
    }

    /// The page: the last one unless [`offer`](Self::offer) said `Break`.
    pub fn finish(self) -> Page<T> {
        self.page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages `keys` with `limit` and `budget`, keeping the even numbers.
    fn pages(keys: &[u32], limit: usize, budget: usize) -> Vec<Page<u32>> {
        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut fill = PageFill::new(limit, budget);
            for key in keys
                .iter()
                .filter(|k| after.as_ref().is_none_or(|a| format!("{k:03}") > *a))
            {
                let item = (key % 2 == 0).then_some(*key);
                if fill.offer(&format!("{key:03}"), item).is_break() {
                    break;
                }
            }
            let page = fill.finish();
            after.clone_from(&page.resume_after);
            let last = page.resume_after.is_none();
            pages.push(page);
            if last {
                return pages;
            }
        }
    }

    #[test]
    fn a_page_stops_at_its_limit_and_the_next_resumes_after_it() {
        let keys: Vec<u32> = (1..=10).collect();
        let listed = pages(&keys, 2, 100);
        let items: Vec<Vec<u32>> = listed.iter().map(|p| p.items.clone()).collect();
        assert_eq!(items, [vec![2, 4], vec![6, 8], vec![10]]);
        assert_eq!(listed[0].resume_after.as_deref(), Some("004"));
        // The last page says so, even when it is full.
        let exact = pages(&[2, 4], 2, 100);
        assert_eq!(exact.len(), 1, "{exact:?}");
        assert_eq!(exact[0].items, [2, 4]);
    }

    #[test]
    fn the_budget_ends_a_page_early_without_losing_an_item() {
        let keys: Vec<u32> = (1..=10).collect();
        let listed = pages(&keys, 100, 3);
        let items: Vec<Vec<u32>> = listed.iter().map(|p| p.items.clone()).collect();
        // Three keys looked at per page: 1 2 3 | 4 5 6 | 7 8 9 | 10.
        assert_eq!(items, [vec![2], vec![4, 6], vec![8], vec![10]]);
        // Positive control: with room, one page holds them all.
        let one = pages(&keys, 100, 100);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].items, [2, 4, 6, 8, 10]);
    }

    #[test]
    fn zero_limits_still_move_the_listing_on() {
        let keys: Vec<u32> = (1..=4).collect();
        let items: Vec<u32> = pages(&keys, 0, 0)
            .into_iter()
            .flat_map(|p| p.items)
            .collect();
        assert_eq!(items, [2, 4]);
    }
}
