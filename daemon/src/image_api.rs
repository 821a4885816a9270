//! The bridge between the API and the image store: error statuses, image defaults for new
//! containers, and the containers that keep an image in use.

use crate::container::create::ImageDefaults;
use crate::daemon::Daemon;
use crate::http::{ApiError, ApiResult};
use crate::images::Error;

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        match e {
            Error::NotFound(m) => ApiError::not_found(m),
            Error::Conflict(m) => ApiError::conflict(m),
            Error::InvalidInput(m) => ApiError::bad_request(m),
            Error::Io(e) => ApiError::internal(format!("image store: {e}")),
        }
    }
}

/// The image a create names, and the defaults it gives the container.
pub async fn defaults(d: &Daemon, reference: &str) -> ApiResult<(String, ImageDefaults)> {
    let id = d.images.resolve(reference).map_err(|e| match e {
        // The CLI reacts to a 404 by offering to pull: say why that cannot happen.
        Error::NotFound(_) => ApiError::not_found(format!("No such image: {reference}")),
        other => other.into(),
    })?;
    let rc = d.images.run_config(&id)?;
    Ok((
        id,
        ImageDefaults {
            env: rc.env.unwrap_or_default(),
            cmd: rc.cmd.unwrap_or_default(),
            entrypoint: rc.entrypoint.unwrap_or_default(),
            working_dir: rc.working_dir,
            user: rc.user,
            volumes: rc.volumes.unwrap_or_default().into_keys().collect(),
            labels: rc.labels.unwrap_or_default(),
            stop_signal: rc.stop_signal,
        },
    ))
}

/// A container (its name) that uses the image, if any.
pub fn user_of(d: &Daemon, image_id: &str) -> Option<String> {
    d.containers
        .lock()
        .unwrap()
        .all()
        .find(|c| c.rec().image_id == image_id)
        .map(|c| c.name())
}
