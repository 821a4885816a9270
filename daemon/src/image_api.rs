//! The bridge between the API and the image store: error statuses, image defaults for new
//! containers, and the containers that keep an image in use.

use crate::container::create::ImageDefaults;
use crate::daemon::Daemon;
use crate::http::{ApiError, ApiResult};
use crate::image::{Error, ImageId, ImageUser};

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
    let id = d.images.resolve(reference)?;
    let rc = d.images.run_config(&id)?;
    Ok((
        id.to_string(),
        ImageDefaults {
            env: rc.env.unwrap_or_default(),
            cmd: rc.cmd.unwrap_or_default(),
            entrypoint: rc.entrypoint.unwrap_or_default(),
            working_dir: rc.working_dir.unwrap_or_default(),
            user: rc.user.unwrap_or_default(),
            volumes: rc.volumes.unwrap_or_default().into_keys().collect(),
            labels: rc.labels.unwrap_or_default(),
            stop_signal: rc.stop_signal,
        },
    ))
}

/// Unpacked size of an image's layers (0 for an id the store no longer has).
pub fn size(d: &Daemon, image_id: &str) -> u64 {
    ImageId::parse(image_id)
        .and_then(|id| d.images.size(&id))
        .unwrap_or(0)
}

/// A container that uses the image, if any.
pub fn user_of(d: &Daemon, image: &ImageId) -> Option<ImageUser> {
    let want = image.to_string();
    d.containers
        .lock()
        .unwrap()
        .all()
        .find(|c| c.rec().image_id == want)
        .map(|c| ImageUser {
            container: c.id.clone(),
            running: c.status().is_running(),
        })
}
