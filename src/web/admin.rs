//! What only admins do on the web: disable a user (`POST /account/users/disable`, a form
//! on their account page). The `Admin` extractor lets nobody else in.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;

use super::account::refused;
use super::auth::Admin;
use super::csrf::{protected_form, CheckedForm};
use super::error::AppError;
use super::templates::Frame;
use super::AppState;
use crate::accounts::login_key;

protected_form! {
    /// Whom to disable.
    pub struct DisableForm { username }
}

/// `POST /account/users/disable` (admins only): the user's sessions end and their tokens
/// stop working at once; their items stay.
pub async fn disable_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Extension(frame): Extension<Frame>,
    CheckedForm(form): CheckedForm<DisableForm>,
) -> Result<Response, AppError> {
    let key = login_key(form.username.as_deref().unwrap_or(""));
    let disabled = match state.store.find_user(&key).await? {
        Some(user) if user.id == admin.user.id => Err("You cannot disable yourself."),
        Some(user) => Ok(user),
        None => Err("There is no user of that name."),
    };
    let user = match disabled {
        Ok(user) => user,
        Err(why) => {
            return refused(&state, &admin, &frame, "disable", why.to_owned()).await;
        }
    };
    state.store.set_disabled(&key, true).await?;
    let ended = state.store.delete_other_sessions(user.id, None).await?;
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
