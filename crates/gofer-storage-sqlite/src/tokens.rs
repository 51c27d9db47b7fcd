//! API tokens: only their hashes are kept.

use async_trait::async_trait;
use gofer_api::permissions::Token;
use gofer_storage::{Result, TokenStore};
use rusqlite::params;

use crate::codec::{Record, all, one, query_values, to_json};
use crate::{SqliteStorage, backend, sql_error};

pub(crate) fn upsert_token(tx: &rusqlite::Transaction<'_>, token: &Token) -> Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO tokens ({columns}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO UPDATE \
             SET hash = excluded.hash, user = excluded.user, roles = excluded.roles, created = excluded.created, \
             expires = excluded.expires, disabled = excluded.disabled, metadata = excluded.metadata",
            columns = Token::COLUMNS
        ),
        params![
            token.id,
            token.hash,
            token.user,
            to_json(&token.roles)?,
            token.created,
            token.expires,
            token.disabled,
            to_json(&token.metadata)?
        ],
    )
    .map_err(|e| backend("store a token", e))?;
    Ok(())
}

#[async_trait]
impl TokenStore for SqliteStorage {
    async fn put_token(&self, token: &Token) -> Result<()> {
        let token = token.clone();
        self.write("store a token", move |tx| upsert_token(tx, &token)).await
    }

    async fn get_token_by_hash(&self, hash: &str) -> Result<Token> {
        self.read(move |conn| {
            one::<Token>(conn, "WHERE hash = ?1", [hash]).map_err(sql_error("look up a token", || "token".to_string()))
        })
        .await
    }

    async fn get_token(&self, id: &str) -> Result<Token> {
        self.read(move |conn| {
            one::<Token>(conn, "WHERE id = ?1", [id]).map_err(sql_error("get a token", || format!("token '{id}'")))
        })
        .await
    }

    async fn list_tokens(&self) -> Result<Vec<Token>> {
        self.read(|conn| all::<Token>(conn, "list tokens", "ORDER BY id", [])).await
    }

    async fn delete_token(&self, id: &str) -> Result<()> {
        self.delete_by_id("delete a token", "DELETE FROM tokens WHERE id = ?1", id, format!("token '{id}'")).await
    }

    async fn insert_bootstrap_token(&self, token: &Token) -> Result<()> {
        let token = token.clone();
        self.write("store the bootstrap token", move |tx| {
            tx.execute("INSERT INTO system (key, value) VALUES ('bootstrapped', ?1)", [&token.id])
                .map_err(sql_error("store the bootstrap token", || "the bootstrap token".to_string()))?;
            upsert_token(tx, &token)
        })
        .await
    }

    async fn token_users(&self, prefix: &str) -> Result<Vec<String>> {
        self.read(move |conn| {
            query_values(
                conn,
                "list token holders",
                "SELECT DISTINCT user FROM tokens WHERE substr(user, 1, length(?1)) = ?1 ORDER BY user",
                [prefix],
                |row| row.get(0),
            )
        })
        .await
    }

    async fn delete_tokens_of_user(&self, user: &str) -> Result<u64> {
        let user = user.to_string();
        self.write("delete tokens", move |tx| {
            let deleted =
                tx.execute("DELETE FROM tokens WHERE user = ?1", [&user]).map_err(|e| backend("delete tokens", e))?;
            Ok(deleted as u64)
        })
        .await
    }
}
