//! The account pages: `/signup`, `/login` (with `?next=`), `POST /logout`, and `/account`
//! (change the password, API tokens, sign out everywhere else). Every sign-up, login
//! (success or failure, with the client's address), logout and token change goes to the
//! journal as structured fields; never a password, a session id or a token.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::auth::{safe_next, set_cookie, Frame, SignedIn, Viewer};
use super::csrf::{CheckedForm, Protected};
use super::error::AppError;
use super::forwarded::Origin;
use super::AppState;
use crate::accounts::password::{self, Verified};
use crate::accounts::{
    check_password, login_key, login_wait, password_problem, secrets, token_name, User, Username,
};
use crate::config::Signup;
use crate::items::FieldErrors;

#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Default, Deserialize)]
pub struct CredentialsForm {
    csrf_token: Option<String>,
    username: Option<String>,
    password: Option<String>,
    next: Option<String>,
}

#[derive(Default, Deserialize)]
pub struct PasswordForm {
    csrf_token: Option<String>,
    current_password: Option<String>,
    new_password: Option<String>,
}

#[derive(Default, Deserialize)]
pub struct TokenForm {
    csrf_token: Option<String>,
    name: Option<String>,
}

#[derive(Default, Deserialize)]
pub struct ButtonForm {
    csrf_token: Option<String>,
}

macro_rules! protected {
    ($($form:ty),*) => {$(
        impl Protected for $form {
            fn csrf_token(&self) -> Option<&str> {
                self.csrf_token.as_deref()
            }
        }
    )*};
}
protected!(CredentialsForm, PasswordForm, TokenForm, ButtonForm);

/// Which of the two credential pages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Credentials {
    Signup,
    Login,
}

/// What a credential page shows besides the frame.
struct CredentialsPage<'a> {
    username: &'a str,
    next: &'a str,
    message: Option<&'a str>,
    errors: &'a FieldErrors,
}

impl Credentials {
    /// The page as first opened, going on to `?next=` (when it is a path of this site).
    fn render_empty(
        self,
        state: &AppState,
        frame: &Frame,
        query: &NextQuery,
    ) -> Result<Html<String>, AppError> {
        let next = safe_next(query.next.as_deref());
        let page = CredentialsPage {
            username: "",
            next: &next,
            message: None,
            errors: &FieldErrors::new(),
        };
        self.render(state, frame, page)
    }

    fn render(
        self,
        state: &AppState,
        frame: &Frame,
        page: CredentialsPage<'_>,
    ) -> Result<Html<String>, AppError> {
        let mut context = tera::Context::new();
        frame.insert_into(&mut context);
        let (heading, action, submit, autocomplete) = match self {
            Credentials::Signup => ("Make an account", "/signup", "Sign up", "new-password"),
            Credentials::Login => ("Log in", "/login", "Log in", "current-password"),
        };
        let next_query = serde_urlencoded::to_string([("next", page.next)]).unwrap_or_default();
        let (other_prompt, other_label, other_url) = match self {
            Credentials::Signup => ("Have an account?", "Log in", format!("/login?{next_query}")),
            Credentials::Login => (
                "New here?",
                "Make an account",
                format!("/signup?{next_query}"),
            ),
        };
        let hint = (self == Credentials::Signup).then(|| {
            format!(
                "At least {} characters; a few unrelated words work well. No rules about digits or symbols.",
                state.accounts.min_password_chars
            )
        });
        context.insert("heading", heading);
        context.insert("action", action);
        context.insert("submit", submit);
        context.insert("autocomplete", autocomplete);
        context.insert("username", page.username);
        context.insert("next", page.next);
        context.insert("message", &page.message);
        context.insert("errors", page.errors);
        context.insert("hint", &hint);
        context.insert("other_prompt", other_prompt);
        context.insert("other_label", other_label);
        context.insert("other_url", &other_url);
        Ok(Html(state.templates.render("credentials.html", &context)?))
    }
}

const SIGNUP_CLOSED: &str =
    "This shop does not take new accounts on the web; ask its admin to make one for you.";

/// `GET /signup`.
pub async fn signup_form(
    State(state): State<AppState>,
    Extension(frame): Extension<Frame>,
    Query(query): Query<NextQuery>,
) -> Result<Html<String>, AppError> {
    if state.accounts.signup == Signup::Closed {
        return Err(AppError::Forbidden(SIGNUP_CLOSED));
    }
    Credentials::Signup.render_empty(&state, &frame, &query)
}

/// `POST /signup`: make the account and sign in, or show the form again with messages.
pub async fn signup(
    State(state): State<AppState>,
    origin: Origin,
    viewer: Viewer,
    Extension(frame): Extension<Frame>,
    CheckedForm(form): CheckedForm<CredentialsForm>,
) -> Result<Response, AppError> {
    if state.accounts.signup == Signup::Closed {
        return Err(AppError::Forbidden(SIGNUP_CLOSED));
    }
    let typed = form.username.unwrap_or_default();
    let next = safe_next(form.next.as_deref());
    let mut errors = FieldErrors::new();
    let name = Username::parse(&typed)
        .map_err(|why| errors.insert("username", why))
        .ok();
    let secret = form.password.unwrap_or_default();
    let min = state.accounts.min_password_chars;
    let checked_name = name
        .as_ref()
        .map_or_else(|| typed.trim().to_owned(), |n| n.as_str().to_owned());
    let hashed = state
        .hasher
        .run(move || check_password(&secret, &checked_name, min).map(|()| password::hash(&secret)))
        .await?;
    let hash = hashed
        .map_err(|code| errors.insert("password", password_problem(code, min)))
        .ok();
    let created = match (name, hash) {
        (Some(name), Some(hash)) if errors.is_empty() => {
            state.store.create_user(&name, &hash, false).await?
        }
        _ => None,
    };
    let Some(user) = created else {
        if errors.is_empty() {
            errors.insert("username", "This username is taken; choose another.".into());
        }
        let page = CredentialsPage {
            username: typed.trim(),
            next: &next,
            message: Some("Please correct the fields marked below."),
            errors: &errors,
        };
        let html = Credentials::Signup.render(&state, &frame, page)?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response());
    };
    tracing::info!(
        event = "signup",
        user = %user.username,
        address = %origin.address_text(),
        "{} signed up (from {})",
        user.username,
        origin.address_text()
    );
    start_session(&state, &viewer, &user, origin, &next).await
}

/// `GET /login?next=`.
pub async fn login_form(
    State(state): State<AppState>,
    Extension(frame): Extension<Frame>,
    Query(query): Query<NextQuery>,
) -> Result<Html<String>, AppError> {
    Credentials::Login.render_empty(&state, &frame, &query)
}

/// The answer to every failed login: the same words for an unknown user and a wrong
/// password (and the same work, see `password::verify_nobody`).
const LOGIN_FAILED: &str = "Wrong username or password.";

/// `POST /login`: refused with 429 while the account or the address has had too many
/// failures; otherwise check the password (off the async workers), and on success start
/// a new session (a new id: no fixation) and go to `next`.
pub async fn login(
    State(state): State<AppState>,
    origin: Origin,
    viewer: Viewer,
    Extension(frame): Extension<Frame>,
    CheckedForm(form): CheckedForm<CredentialsForm>,
) -> Result<Response, AppError> {
    let typed = form.username.unwrap_or_default();
    let key = login_key(&typed);
    let address = origin.address_text();
    let next = safe_next(form.next.as_deref());
    throttle(&state, &key, &address).await?;
    let secret = form.password.unwrap_or_default();
    let found = state.store.credentials(&key).await?;
    let checked = state
        .hasher
        .run(move || match found {
            Some((user, stored)) => {
                let verified = password::verify(&secret, &stored);
                let rehash = verified.needs_rehash.then(|| password::hash(&secret));
                (Some(user), verified, rehash)
            }
            None => {
                password::verify_nobody(&secret);
                (
                    None,
                    Verified {
                        matches: false,
                        needs_rehash: false,
                    },
                    None,
                )
            }
        })
        .await?;
    match checked {
        (Some(user), verified, rehash) if verified.matches && !user.disabled => {
            if let Some(hash) = rehash {
                state.store.set_password_hash(user.id, &hash).await?;
                tracing::info!(event = "password_rehashed", user = %user.username, "{}'s password hash upgraded to the current parameters", user.username);
            }
            state.store.clear_login_failures(&key).await?;
            tracing::info!(
                event = "login",
                user = %user.username,
                address = %address,
                "{} logged in (from {address})",
                user.username
            );
            start_session(&state, &viewer, &user, origin, &next).await
        }
        (user, _, _) => {
            state.store.record_login_failure(&key, &address).await?;
            let why = match &user {
                None => "no such user",
                Some(user) if user.disabled => "user disabled",
                Some(_) => "wrong password",
            };
            tracing::warn!(
                event = "login_failed",
                user = %key,
                address = %address,
                reason = why,
                "failed login for {key:?} from {address} ({why})"
            );
            let page = CredentialsPage {
                username: typed.trim(),
                next: &next,
                message: Some(LOGIN_FAILED),
                errors: &FieldErrors::new(),
            };
            let html = Credentials::Login.render(&state, &frame, page)?;
            Ok((StatusCode::UNAUTHORIZED, html).into_response())
        }
    }
}

/// 429 when the account or the address has failed too often within the window.
async fn throttle(state: &AppState, key: &str, address: &str) -> Result<(), AppError> {
    let settings = &state.accounts;
    let now = Utc::now();
    let window = settings.login_window();
    let since = now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let (account, from_address) = state.store.login_failures(key, address, since).await?;
    let wait = [account, from_address]
        .iter()
        .filter_map(|f| login_wait(f.count, f.oldest, settings.login_attempts, window, now))
        .max();
    if let Some(seconds) = wait {
        tracing::warn!(
            event = "login_throttled",
            user = %key,
            address = %address,
            retry_after_secs = seconds,
            "login for {key:?} from {address} refused for {seconds} s: too many failures"
        );
        return Err(AppError::TooManyAttempts(seconds));
    }
    Ok(())
}

/// A new session for `user` (ending the one the browser had), its cookie, and the way on.
async fn start_session(
    state: &AppState,
    viewer: &Viewer,
    user: &User,
    origin: Origin,
    next: &str,
) -> Result<Response, AppError> {
    if let Some(old) = &viewer.0 {
        state.store.delete_session(&old.session).await?;
    }
    let id = secrets::new_session_id();
    state
        .store
        .create_session(&secrets::digest(&id), user.id)
        .await?;
    let mut response = Redirect::to(next).into_response();
    set_cookie(&mut response, Some(&id), origin.https);
    Ok(response)
}

/// `POST /logout`: end the session on the server (its cookie is then worth nothing).
pub async fn logout(
    State(state): State<AppState>,
    origin: Origin,
    viewer: Viewer,
    CheckedForm(_): CheckedForm<ButtonForm>,
) -> Result<Response, AppError> {
    if let Some(signed_in) = &viewer.0 {
        state.store.delete_session(&signed_in.session).await?;
        tracing::info!(
            event = "logout",
            user = %signed_in.user.username,
            address = %origin.address_text(),
            "{} logged out",
            signed_in.user.username
        );
    }
    let mut response = Redirect::to("/items").into_response();
    set_cookie(&mut response, None, origin.https);
    Ok(response)
}

/// A token as the account page lists it.
#[derive(Serialize)]
struct TokenRow {
    id: i64,
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
                .map_err(|code| ("new_password", password_problem(code, min)))?;
            Ok(password::hash(&new))
        })
        .await?;
    match outcome {
        Ok(hash) => {
            state.store.set_password_hash(user.id, &hash).await?;
            let ended = state
                .store
                .delete_other_sessions(user.id, &signed_in.session)
                .await?;
            tracing::info!(event = "password_changed", user = %user.username, sessions_ended = ended, "{} changed their password; {ended} other session(s) ended", user.username);
            Ok(Redirect::to("/account?done=password").into_response())
        }
        Err((field, why)) => {
            let mut errors = FieldErrors::new();
            errors.insert(field, why);
            let notes = AccountNotes {
                errors,
                ..AccountNotes::default()
            };
            let html = render_account(&state, &signed_in, &frame, notes).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
        }
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
            let mut errors = FieldErrors::new();
            errors.insert("name", why);
            let notes = AccountNotes {
                errors,
                ..AccountNotes::default()
            };
            let html = render_account(&state, &signed_in, &frame, notes).await?;
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response());
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

/// Make an API token for `user`: the token, which only its hash outlives.
pub async fn issue_token(
    store: &crate::db::Store,
    user: &User,
    name: &str,
    by: &str,
) -> Result<String, crate::db::StoreError> {
    let token = secrets::new_api_token();
    let info = store
        .create_token(user.id, name, &secrets::digest(&token))
        .await?;
    tracing::info!(event = "token_created", user = %user.username, token_id = info.id, token_name = %info.name, by, "API token {} ({:?}) created for {}", info.id, info.name, user.username);
    Ok(token)
}

/// `POST /account/tokens/{id}/revoke`: the token stops working at once.
pub async fn revoke_token(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    CheckedForm(_): CheckedForm<ButtonForm>,
) -> Result<Redirect, AppError> {
    let id: i64 = id.parse().map_err(|_| AppError::NotFound("token"))?;
    if !state.store.revoke_token(signed_in.user.id, id).await? {
        return Err(AppError::NotFound("token"));
    }
    tracing::info!(event = "token_revoked", user = %signed_in.user.username, token_id = id, "API token {id} of {} revoked", signed_in.user.username);
    Ok(Redirect::to("/account?done=revoked"))
}

#[derive(Default, Deserialize)]
pub struct DisableForm {
    csrf_token: Option<String>,
    username: Option<String>,
}
protected!(DisableForm);

/// `POST /account/users/disable` (admins only): the user's sessions end and their tokens
/// stop working at once; their items stay.
pub async fn disable_user(
    State(state): State<AppState>,
    admin: SignedIn,
    Extension(frame): Extension<Frame>,
    CheckedForm(form): CheckedForm<DisableForm>,
) -> Result<Response, AppError> {
    if !admin.user.is_admin {
        return Err(AppError::Forbidden("Only an admin may disable a user."));
    }
    let key = login_key(form.username.as_deref().unwrap_or(""));
    let disabled = match state.store.find_user(&key).await? {
        Some(user) if user.id == admin.user.id => Err("You cannot disable yourself."),
        Some(user) => Ok(user),
        None => Err("There is no user of that name."),
    };
    let user = match disabled {
        Ok(user) => user,
        Err(why) => {
            let mut errors = FieldErrors::new();
            errors.insert("disable", why.to_owned());
            let notes = AccountNotes {
                errors,
                ..AccountNotes::default()
            };
            let html = render_account(&state, &admin, &frame, notes).await?;
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response());
        }
    };
    state.store.set_disabled(&key, true).await?;
    let ended = state.store.delete_other_sessions(user.id, "").await?;
    tracing::info!(
        event = "admin_user_disabled",
        user = %user.username,
        admin = %admin.user.username,
        sessions_ended = ended,
        "{} disabled {} ({ended} session(s) ended)",
        admin.user.username,
        user.username
    );
    Ok(Redirect::to("/account?done=disabled").into_response())
}

/// `POST /account/sessions/end-others`: sign out everywhere but here.
pub async fn end_other_sessions(
    State(state): State<AppState>,
    signed_in: SignedIn,
    CheckedForm(_): CheckedForm<ButtonForm>,
) -> Result<Redirect, AppError> {
    let ended = state
        .store
        .delete_other_sessions(signed_in.user.id, &signed_in.session)
        .await?;
    tracing::info!(event = "sessions_ended", user = %signed_in.user.username, sessions_ended = ended, "{} ended {ended} other session(s)", signed_in.user.username);
    Ok(Redirect::to("/account?done=others"))
}
