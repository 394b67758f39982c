//! The account page, `/account`: change the password, make and revoke API tokens, sign
//! out everywhere else. Each change goes to the journal; never a password or a token.
//! The current password is asked again to change it and to make a token (a stolen
//! session alone can do neither), and is counted against guessing like a login.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::auth::SignedIn;
use super::csrf::{protected_form, CheckedForm};
use super::device::DeviceCookie;
use super::error::AppError;
use super::forwarded::Origin;
use super::password_check::{check_password_of, Check};
use super::signin::ButtonForm;
use super::templates::Frame;
use super::AppState;
use crate::accounts::password;
use crate::accounts::{
    check_password_apart, issue_token, sign_out_elsewhere, token_name, TokenLifetime,
};
use crate::ids::TokenId;
use crate::items::FieldErrors;

protected_form! {
    /// The change-password form.
    pub struct PasswordForm { current_password, new_password }
}

protected_form! {
    /// The new-token form.
    pub struct TokenForm { name, password }
}

/// A token as the account page lists it.
#[derive(Serialize)]
struct TokenRow {
    id: TokenId,
    name: String,
    created: String,
    last_used: String,
    expires: String,
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
            expires: t.expires_at.map_or_else(|| "never".to_owned(), when),
        })
        .collect();
    let mut context = tera::Context::new();
    frame.insert_into(&mut context);
    context.insert("is_admin", &signed_in.user.is_admin);
    let lifetime_days = match state.accounts.token_lifetime() {
        TokenLifetime::For(lasts) => Some(lasts.as_secs().div_ceil(86_400)),
        TokenLifetime::Never => None,
    };
    context.insert("token_lifetime_days", &lifetime_days);
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
        Some("password") => Some(
            "Your password was changed: your other sessions have ended and your API tokens were revoked.",
        ),
        Some("others") => {
            Some("Your other sessions have ended and your API tokens were revoked.")
        }
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

/// What a wrong current password is told (beside its field).
const NOT_YOUR_PASSWORD: &str = "That is not your current password.";

/// `POST /account/password`: the current password (checked as a login is), then the new
/// one by the same rules as at sign-up; every other session of the user ends and every
/// API token is revoked.
pub async fn change_password(
    State(state): State<AppState>,
    signed_in: SignedIn,
    origin: Origin,
    device: DeviceCookie,
    Extension(frame): Extension<Frame>,
    CheckedForm(form): CheckedForm<PasswordForm>,
) -> Result<Response, AppError> {
    let user = signed_in.user.clone();
    let key = user.key();
    let current = form.current_password.unwrap_or_default();
    let checked = check_password_of(
        &state,
        &origin,
        &device,
        Check::CurrentPassword,
        &key,
        current,
    )
    .await?;
    if checked.is_err() {
        return refused(
            &state,
            &signed_in,
            &frame,
            "current_password",
            NOT_YOUR_PASSWORD.into(),
        )
        .await;
    }
    let new = form.new_password.unwrap_or_default();
    let min = state.accounts.min_password_chars;
    let name = user.username.clone();
    let hashed = state
        .hasher
        .run(move || check_password_apart(&new, &name, min).map(|()| password::hash(&new)))
        .await?;
    let hash = match hashed {
        Ok(hash) => hash,
        Err(problem) => {
            return refused(
                &state,
                &signed_in,
                &frame,
                "new_password",
                problem.to_string(),
            )
            .await
        }
    };
    state.store.set_password_hash(user.id, &hash).await?;
    let ended = sign_out_elsewhere(&state.store, user.id, Some(&signed_in.session)).await?;
    tracing::info!(event = "password_changed", user = %user.username, sessions_ended = ended.sessions, tokens_revoked = ended.tokens, "{} changed their password; {} other session(s) ended, {} API token(s) revoked", user.username, ended.sessions, ended.tokens);
    Ok(Redirect::to("/account?done=password").into_response())
}

/// `POST /account/tokens`: with the account's password, make a token (lasting
/// `accounts.token_lifetime_secs`) and show it, this once.
pub async fn create_token(
    State(state): State<AppState>,
    signed_in: SignedIn,
    origin: Origin,
    device: DeviceCookie,
    Extension(frame): Extension<Frame>,
    CheckedForm(form): CheckedForm<TokenForm>,
) -> Result<Response, AppError> {
    let name = match token_name(form.name.as_deref().unwrap_or("")) {
        Ok(name) => name,
        Err(why) => {
            return refused(&state, &signed_in, &frame, "name", why).await;
        }
    };
    let key = signed_in.user.key();
    let secret = form.password.unwrap_or_default();
    let checked =
        check_password_of(&state, &origin, &device, Check::NewToken, &key, secret).await?;
    if checked.is_err() {
        let why = "Enter your password to make a token (that is not it).".to_owned();
        return refused(&state, &signed_in, &frame, "token_password", why).await;
    }
    let lifetime = state.accounts.token_lifetime();
    let token = issue_token(&state.store, &signed_in.user, &name, lifetime, "web").await?;
    let notes = AccountNotes {
        new_token: Some(&token),
        message: Some("Token created."),
        ..AccountNotes::default()
    };
    let html = render_account(&state, &signed_in, &frame, notes).await?;
    Ok(html.into_response())
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

/// `POST /account/sessions/end-others`: sign out everywhere but here, API tokens included.
pub async fn end_other_sessions(
    State(state): State<AppState>,
    signed_in: SignedIn,
    CheckedForm(_): CheckedForm<ButtonForm>,
) -> Result<Redirect, AppError> {
    let user = &signed_in.user;
    let ended = sign_out_elsewhere(&state.store, user.id, Some(&signed_in.session)).await?;
    tracing::info!(event = "sessions_ended", user = %user.username, sessions_ended = ended.sessions, tokens_revoked = ended.tokens, "{} ended {} other session(s) and revoked {} API token(s)", user.username, ended.sessions, ended.tokens);
    Ok(Redirect::to("/account?done=others"))
}
