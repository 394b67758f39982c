//! Signing in and out: `/signup`, `/login` (with `?next=`) and `POST /logout`. Every
//! sign-up, login (success or failure, with the client's address) and logout goes to the
//! journal as structured fields; never a password or a session id, and a name typed at
//! login only when it is a user's. Checking the password is `password_check`'s (counted
//! against guessing, then `accounts::authenticate`); this is its HTTP face.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;
use serde::Deserialize;

use super::auth::{safe_next, set_cookie, Viewer};
use super::csrf::{protected_form, CheckedForm};
use super::device::{self, DeviceCookie};
use super::error::AppError;
use super::forwarded::Origin;
use super::password_check::{check_password_of, Check};
use super::templates::Frame;
use super::AppState;
use crate::accounts::password;
use crate::accounts::secrets::{self, SessionHash};
use crate::accounts::{check_password_apart, login_key, User, Username};
use crate::config::Signup;
use crate::items::FieldErrors;

#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

protected_form! {
    /// The sign-up and login forms.
    pub struct CredentialsForm { username, password, next }
}

protected_form! {
    /// A form that is only its button (log out).
    pub struct ButtonForm {}
}

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
        frame.insert_form_token(&mut context);
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
    device: DeviceCookie,
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
        .run(move || {
            check_password_apart(&secret, &checked_name, min).map(|()| password::hash(&secret))
        })
        .await?;
    let hash = hashed
        .map_err(|problem| errors.insert("password", problem.to_string()))
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
    start_session(&state, &viewer, &device, &user, origin, &next).await
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

/// `POST /login`: the password checked as every password is (`password_check`: counted
/// before it is hashed, 429 past the limit), and on success a new session (a new id: no
/// fixation), the browser made a known device of the account, and on to `next`.
pub async fn login(
    State(state): State<AppState>,
    origin: Origin,
    device: DeviceCookie,
    viewer: Viewer,
    Extension(frame): Extension<Frame>,
    CheckedForm(form): CheckedForm<CredentialsForm>,
) -> Result<Response, AppError> {
    let typed = form.username.unwrap_or_default();
    let key = login_key(&typed);
    let next = safe_next(form.next.as_deref());
    let secret = form.password.unwrap_or_default();
    match check_password_of(&state, &origin, &device, Check::Login, &key, secret).await? {
        Ok(user) => {
            tracing::info!(
                event = "login",
                user = %user.username,
                address = %origin.address_text(),
                "{} logged in (from {})",
                user.username,
                origin.address_text()
            );
            start_session(&state, &viewer, &device, &user, origin, &next).await
        }
        Err(_) => {
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

/// A new session for `user` (ending the one the browser had), its cookie, the device
/// cookie, and the way on.
async fn start_session(
    state: &AppState,
    viewer: &Viewer,
    device: &DeviceCookie,
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
        .create_session(&SessionHash::of(&id), user.id)
        .await?;
    let mut response = Redirect::to(next).into_response();
    set_cookie(&mut response, Some(&id), origin.https);
    let key = user.key();
    device::remember(&mut response, &state.csrf, device, &key, origin.https);
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
