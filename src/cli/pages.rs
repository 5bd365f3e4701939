//! Following a listing's pages (`mayfly entry list`, `mayfly revoke list`):
//! the admin API answers a page at a time, with a token for the next one.

use std::future::Future;

use super::error::CliError;

/// Calls `fetch` with each page token, starting from `""`, and hands every
/// item to `each` as its page arrives, until the server's next token is
/// empty. `fetch` answers a page's items and the next token.
///
/// # Errors
///
/// The first error of `fetch` or `each`; [`CliError::BadResponse`] if the
/// server hands back the token it was given, which would never end.
pub(super) async fn follow<T, Fut>(
    mut fetch: impl FnMut(String) -> Fut,
    mut each: impl FnMut(T) -> Result<(), CliError>,
) -> Result<(), CliError>
where
    Fut: Future<Output = Result<(Vec<T>, String), CliError>>,
{
    let mut token = String::new();
    loop {
        let (items, next) = fetch(token.clone()).await?;
        for item in items {
            each(item)?;
        }
        if next.is_empty() {
            return Ok(());
        }
        if next == token {
            return Err(CliError::bad_response(
                "the server answered a page with the token that asked for it; stopping",
            ));
        }
        token = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn follows_every_page_until_the_token_is_empty() {
        let pages = [(vec![1, 2], "a"), (vec![], "b"), (vec![3], "")];
        let mut asked = Vec::new();
        let mut seen = Vec::new();
        follow(
            |token| {
                asked.push(token.clone());
                let index = asked.len() - 1;
                let (items, next) = pages[index].clone();
                async move { Ok((items, next.to_owned())) }
            },
            |item| {
                seen.push(item);
                Ok(())
            },
        )
        .await
        .unwrap();
        assert_eq!(seen, [1, 2, 3]);
        assert_eq!(asked, ["", "a", "b"]);
    }

    #[tokio::test]
    async fn a_token_handed_back_unchanged_stops_the_loop() {
        let mut calls = 0;
        let result = follow(
            |_token| {
                calls += 1;
                async { Ok((vec![0], "same".to_owned())) }
            },
            |_item: i32| Ok(()),
        )
        .await;
        assert!(
            matches!(result, Err(CliError::BadResponse { .. })),
            "{result:?}"
        );
        // Positive control of the guard: the first "same" is followed once.
        assert_eq!(calls, 2);
    }
}
