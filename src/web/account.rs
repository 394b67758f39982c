//! The account page, `/account`: change the password, make and revoke API tokens, sign
//! out everywhere else. Each change goes to the journal; never a password or a token.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::auth::SignedIn;
use super::csrf::{protected_form, CheckedForm};
use super::error::AppError;
use super::signin::ButtonForm;
use super::templates::Frame;
use super::AppState;
use crate::accounts::password;
use crate::accounts::{check_password, issue_token, token_name};
use crate::ids::TokenId;
use crate::items::FieldErrors;

protected_form! {
    /// The change-password form.
    pub struct PasswordForm { current_password, new_password }
}

protected_form! {
    /// The new-token form.
    pub struct TokenForm { name }
}

/// A token as the account page lists it.
#[derive(Serialize)]
struct TokenRow {
    id: TokenId,
    name: String,
    created: String,
    last_used: String,
}

/// What the account page shows besides the user's tokens.
#[derive(Default)]
struct AccountNotes<'a> {
    message: Option<&'a str>,
    new_token: Option<&'a str>,
    errors: FieldErrors,
}

async fn render_account(
    state: &AppState,
    signed_in: &SignedIn,
    frame: &Frame,
    notes: AccountNotes<'_>,
) -> Result<Html<String>, AppError> {
    let when = |at: chrono::DateTime<Utc>| at.format("%Y-%m-%d %H:%M UTC").to_string();
    let tokens: Vec<TokenRow> = state
        .store
        .list_tokens(signed_in.user.id)
        .await?
        .into_iter()
        .map(|t| TokenRow {
            id: t.id,
            name: t.name,
            created: when(t.created_at),
            last_used: t.last_used_at.map_or_else(|| "never".to_owned(), when),
        })
        .collect();
    let mut context = tera::Context::new();
    frame.insert_into(&mut context);
    context.insert("is_admin", &signed_in.user.is_admin);
    context.insert("tokens", &tokens);
    context.insert("message", &notes.message);
    context.insert("new_token", &notes.new_token);
    context.insert("errors", &notes.errors);
    Ok(Html(state.templates.render("account.html", &context)?))
}

/// The account page again (422), with `why` next to the form `field` belongs to.
pub(super) async fn refused(
    state: &AppState,
    signed_in: &SignedIn,
    frame: &Frame,
    field: &'static str,
    why: String,
) -> Result<Response, AppError> {
    let mut errors = FieldErrors::new();
    errors.insert(field, why);
    let notes = AccountNotes {
        errors,
        ..AccountNotes::default()
    };
    let html = render_account(state, signed_in, frame, notes).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

/// `GET /account`.
pub async fn account_page(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Extension(frame): Extension<Frame>,
    Query(query): Query<DoneQuery>,
) -> Result<Html<String>, AppError> {
    let message = match query.done.as_deref() {
        Some("password") => Some("Your password was changed, and your other sessions have ended."),
        Some("others") => Some("Your other sessions have ended."),
        Some("revoked") => Some("The token was revoked: it works no more."),
        Some("disabled") => Some("The user was disabled: their sessions and tokens work no more."),
        _ => None,
    };
    let notes = AccountNotes {
        message,
        ..AccountNotes::default()
    };
    render_account(&state, &signed_in, &frame, notes).await
}

/// `POST /account/password`: the current password, then the new one by the same rules as
/// at sign-up; every other session of the user ends.
pub async fn change_password(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Extension(frame): Extension<Frame>,
    CheckedForm(form): CheckedForm<PasswordForm>,
) -> Result<Response, AppError> {
    let user = signed_in.user.clone();
    let (_, stored) = state
        .store
        .credentials(&user.username.to_ascii_lowercase())
        .await?
        .ok_or(AppError::SignInRequired("/account".into()))?;
    let current = form.current_password.unwrap_or_default();
    let new = form.new_password.unwrap_or_default();
    let min = state.accounts.min_password_chars;
    let name = user.username.clone();
    let outcome = state
        .hasher
        .run(move || {
            if !password::verify(&current, &stored).matches {
                return Err((
                    "current_password",
                    "That is not your current password.".to_owned(),
                ));
            }
            check_password(&new, &name, min)
                .map_err(|problem| ("new_password", problem.to_string()))?;
            Ok(password::hash(&new))
        })
        .await?;
    match outcome {
        Ok(hash) => {
            state.store.set_password_hash(user.id, &hash).await?;
            let ended = state
                .store
                .delete_other_sessions(user.id, Some(&signed_in.session))
                .await?;
            tracing::info!(event = "password_changed", user = %user.username, sessions_ended = ended, "{} changed their password; {ended} other session(s) ended", user.username);
            Ok(Redirect::to("/account?done=password").into_response())
        }
        Err((field, why)) => refused(&state, &signed_in, &frame, field, why).await,
    }
}

/// `POST /account/tokens`: make a token and show it, this once.
pub async fn create_token(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Extension(frame): Extension<Frame>,
    CheckedForm(form): CheckedForm<TokenForm>,
) -> Result<Response, AppError> {
    let name = match token_name(form.name.as_deref().unwrap_or("")) {
        Ok(name) => name,
        Err(why) => {
            return refused(&state, &signed_in, &frame, "name", why).await;
        }
    };
    let token = issue_token(&state.store, &signed_in.user, &name, "web").await?;
    let notes = AccountNotes {
        new_token: Some(&token),
        message: Some("Token created."),
        ..AccountNotes::default()
    };
    let html = render_account(&state, &signed_in, &frame, notes).await?;
    // Shown once: no cache may keep the page that carries it.
    Ok(([(axum::http::header::CACHE_CONTROL, "no-store")], html).into_response())
}

/// `POST /account/tokens/{id}/revoke`: the token stops working at once.
pub async fn revoke_token(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    CheckedForm(_): CheckedForm<ButtonForm>,
) -> Result<Redirect, AppError> {
    let id: TokenId = id.parse().map_err(|_| AppError::NotFound("token"))?;
    if !state.store.revoke_token(signed_in.user.id, id).await? {
        return Err(AppError::NotFound("token"));
    }
    tracing::info!(event = "token_revoked", user = %signed_in.user.username, token_id = id.0, "API token {id} of {} revoked", signed_in.user.username);
    Ok(Redirect::to("/account?done=revoked"))
}

/// `POST /account/sessions/end-others`: sign out everywhere but here.
pub async fn end_other_sessions(
    State(state): State<AppState>,
    signed_in: SignedIn,
    CheckedForm(_): CheckedForm<ButtonForm>,
) -> Result<Redirect, AppError> {
    let ended = state
        .store
        .delete_other_sessions(signed_in.user.id, Some(&signed_in.session))
        .await?;
    tracing::info!(event = "sessions_ended", user = %signed_in.user.username, sessions_ended = ended, "{} ended {ended} other session(s)", signed_in.user.username);
    Ok(Redirect::to("/account?done=others"))
}
