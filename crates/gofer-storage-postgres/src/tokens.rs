//! API tokens: only their hashes are kept.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use gofer_api::permissions::Token;
use gofer_storage::{Operation, Result, TokenStore};

use crate::codec::{Columns, Record, all, execute, insert, int, one, rows, to_json, value};
use crate::{PostgresStorage, commit, not_found};

pub(crate) async fn upsert_token(client: &impl GenericClient, token: &Token) -> Result<()> {
    let sql = format!(
        "INSERT INTO tokens ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE \
         SET hash = excluded.hash, holder = excluded.holder, roles = excluded.roles, created = excluded.created, \
         expires = excluded.expires, disabled = excluded.disabled, metadata = excluded.metadata",
        Token::COLUMNS
    );
    execute(
        client,
        "store a token",
        &sql,
        &[
            &token.id,
            &token.hash,
            &token.user,
            &to_json(&token.roles)?,
            &int(token.created)?,
            &int(token.expires)?,
            &token.disabled,
            &to_json(&token.metadata)?,
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl TokenStore for PostgresStorage {
    async fn put_token(&self, token: &Token) -> Result<()> {
        let session = self.session(Operation::Write, "store a token").await?;
        upsert_token(session.client(), token).await
    }

    async fn get_token_by_hash(&self, hash: &str) -> Result<Token> {
        const CONTEXT: &str = "look up a token";
        let session = self.session(Operation::Read, CONTEXT).await?;
        one::<Token>(session.client(), CONTEXT, "WHERE hash = $1", &[&hash], || "token".to_string()).await
    }

    async fn get_token(&self, id: &str) -> Result<Token> {
        const CONTEXT: &str = "get a token";
        let session = self.session(Operation::Read, CONTEXT).await?;
        one::<Token>(session.client(), CONTEXT, "WHERE id = $1", &[&id], || format!("token '{id}'")).await
    }

    async fn list_tokens(&self) -> Result<Vec<Token>> {
        const CONTEXT: &str = "list tokens";
        let session = self.session(Operation::Read, CONTEXT).await?;
        all::<Token>(session.client(), CONTEXT, "ORDER BY id", &[]).await
    }

    async fn delete_token(&self, id: &str) -> Result<()> {
        const CONTEXT: &str = "delete a token";
        let session = self.session(Operation::Write, CONTEXT).await?;
        if execute(session.client(), CONTEXT, "DELETE FROM tokens WHERE id = $1", &[&id]).await? == 0 {
            return Err(not_found(format!("token '{id}'")));
        }
        Ok(())
    }

    async fn insert_bootstrap_token(&self, token: &Token) -> Result<()> {
        const CONTEXT: &str = "store the bootstrap token";
        let mut session = self.session(Operation::Write, CONTEXT).await?;
        let tx = session.begin(CONTEXT).await?;
        insert(&tx, CONTEXT, "INSERT INTO system (key, value) VALUES ('bootstrapped', $1)", &[&token.id], || {
            "the bootstrap token".to_string()
        })
        .await?;
        upsert_token(&tx, token).await?;
        commit(tx, CONTEXT).await
    }

    async fn token_users(&self, prefix: &str) -> Result<Vec<String>> {
        const CONTEXT: &str = "list token holders";
        let session = self.session(Operation::Read, CONTEXT).await?;
        let found = rows(
            session.client(),
            CONTEXT,
            "SELECT DISTINCT holder FROM tokens WHERE left(holder, length($1)) = $1 ORDER BY holder",
            &[&prefix],
        )
        .await?;
        found.iter().map(|row| value(CONTEXT, row.text(0))).collect()
    }

    async fn delete_tokens_of_user(&self, user: &str) -> Result<u64> {
        const CONTEXT: &str = "delete tokens";
        let session = self.session(Operation::Write, CONTEXT).await?;
        execute(session.client(), CONTEXT, "DELETE FROM tokens WHERE holder = $1", &[&user]).await
    }
}
