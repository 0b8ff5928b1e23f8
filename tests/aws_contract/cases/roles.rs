//! Contract cases of IAM roles: create, read, names, paths, session durations, tags and
//! deletion.

use super::policies::{BOUNDARY, MANAGED};
use super::*;

// ---- IAM roles ----

pub async fn role_create_get_delete(b: &Backend) {
    let name = unique("pi-create");
    let input = CreateRole {
        name: name.clone(),
        path: "/pod-identity/contract/".into(),
        assume_role_policy: trust(),
        description: Some("made by the contract suite".into()),
        max_session_duration: Some(7200),
        permissions_boundary_arn: None,
        tags: tags(&[("podidentity.dev/cluster", "contract"), ("team", "a")]),
    };
    let created = b.iam.create_role(&input).await.expect("CreateRole");
    assert_eq!(created.name, name);
    assert_eq!(
        created.arn,
        format!(
            "arn:aws:iam::{}:role/pod-identity/contract/{name}",
            b.account_id
        )
    );
    assert!(created.role_id.starts_with("AROA"), "{}", created.role_id);

    let got = b
        .iam
        .get_role(&name)
        .await
        .expect("GetRole")
        .expect("role exists");
    assert_eq!(got.arn, created.arn);
    assert_eq!(got.path, "/pod-identity/contract/");
    assert_eq!(
        got.description.as_deref(),
        Some("made by the contract suite")
    );
    assert_eq!(got.max_session_duration, 7200);
    assert!(
        documents_equivalent(&got.assume_role_policy, &trust()),
        "{}",
        got.assume_role_policy
    );
    assert_eq!(got.tags, input.tags);
    assert_eq!(got.permissions_boundary_arn, None);

    b.iam.delete_role(&name).await.expect("DeleteRole");
    assert_eq!(b.iam.get_role(&name).await.expect("GetRole"), None);
    expect_aws(
        b.iam.delete_role(&name).await,
        "NoSuchEntity",
        ErrorClass::NotFound,
    );
}

pub async fn role_name_limits(b: &Backend) {
    let longest = format!("pi-{}-{}", suffix(), "x".repeat(64 - 12));
    assert_eq!(longest.len(), 64);
    let role = b
        .iam
        .create_role(&role_input(&longest))
        .await
        .expect("64 characters");
    assert_eq!(role.name, longest);
    let symbols = unique("a_b+c=d,e.f@g");
    b.iam
        .create_role(&role_input(&symbols))
        .await
        .expect("every allowed symbol");

    // AWS refuses longer names and other characters with ValidationError (CreateRole:
    // RoleName, 1-64 of [\w+=,.@-]).
    for bad in [
        format!("{longest}y"),
        String::new(),
        unique("has space"),
        unique("has/slash"),
        unique("ünï"),
    ] {
        refusal(
            b.iam_server,
            "role-name-format",
            b.iam.create_role(&role_input(&bad)).await,
            "ValidationError",
            ErrorClass::UserInput,
        );
    }
}

pub async fn role_name_unique_regardless_of_case(b: &Backend) {
    let name = unique("Pi-Case");
    b.iam
        .create_role(&role_input(&name))
        .await
        .expect("CreateRole");
    let e = expect_aws(
        b.iam.create_role(&role_input(&name)).await,
        "EntityAlreadyExists",
        ErrorClass::Conflict,
    );
    assert_eq!(e.http_status, Some(409));
    // IAM names are unique regardless of case, and GetRole finds a role by any case.
    let upper = b.iam.create_role(&role_input(&name.to_uppercase())).await;
    let lower = b.iam.get_role(&name.to_lowercase()).await.expect("GetRole");
    match known(b.iam_server, "role-name-case") {
        None => {
            expect_aws(upper, "EntityAlreadyExists", ErrorClass::Conflict);
            assert_eq!(lower.map(|r| r.name), Some(name));
        }
        Some(d) => {
            d.holds(&upper, "CreateRole of the name in upper case");
            d.holds_that(
                lower.is_none(),
                format_args!("GetRole in lower case found {lower:?}"),
            );
        }
    }
}

pub async fn role_path_rules(b: &Backend) {
    let mut input = role_input(&unique("pi-path"));
    input.path = "/a/b-c/".into();
    let role = b.iam.create_role(&input).await.expect("nested path");
    assert!(
        role.arn.ends_with(&format!(":role/a/b-c/{}", input.name)),
        "{}",
        role.arn
    );
    // AWS: a path is "/" or begins and ends with "/", printable ASCII between, at
    // most 512 characters.
    for bad in ["a/", "/a", "//x y/", &format!("/{}/", "p".repeat(511))] {
        let mut input = role_input(&unique("pi-path"));
        input.path = bad.to_owned();
        refusal(
            b.iam_server,
            "role-path-format",
            b.iam.create_role(&input).await,
            "ValidationError",
            ErrorClass::UserInput,
        );
    }
}

pub async fn role_session_duration_limits(b: &Backend) {
    for ok in [3600, 43200] {
        let mut input = role_input(&unique("pi-session"));
        input.max_session_duration = Some(ok);
        let role = b
            .iam
            .create_role(&input)
            .await
            .expect("within 3600..=43200");
        assert_eq!(role.max_session_duration, ok);
    }
    for bad in [3599, 43201] {
        let mut input = role_input(&unique("pi-session"));
        input.max_session_duration = Some(bad);
        refusal(
            b.iam_server,
            "role-session-duration-range",
            b.iam.create_role(&input).await,
            "ValidationError",
            ErrorClass::UserInput,
        );
    }
    let role = new_role(b, "pi-session").await;
    assert_eq!(role.max_session_duration, 3600, "default");
    refusal(
        b.iam_server,
        "role-session-duration-range",
        b.iam.update_role(&role.name, None, Some(100)).await,
        "ValidationError",
        ErrorClass::UserInput,
    );
}

pub async fn role_update_description_and_duration(b: &Backend) {
    let role = new_role(b, "pi-update").await;
    b.iam
        .update_role(&role.name, Some("first"), Some(7200))
        .await
        .expect("UpdateRole");
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert_eq!(got.description.as_deref(), Some("first"));
    assert_eq!(got.max_session_duration, 7200);
    // `None` leaves a field as it is.
    b.iam
        .update_role(&role.name, Some("second"), None)
        .await
        .expect("UpdateRole");
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert_eq!(got.description.as_deref(), Some("second"));
    match known(b.iam_server, "update-role-keeps-duration") {
        None => assert_eq!(got.max_session_duration, 7200),
        Some(d) => d.holds_that(
            got.max_session_duration == 3600,
            format_args!("MaxSessionDuration {}", got.max_session_duration),
        ),
    }
}

pub async fn missing_role_is_no_such_entity(b: &Backend) {
    let name = unique("pi-missing");
    assert_eq!(b.iam.get_role(&name).await.expect("GetRole"), None);
    let nf = ErrorClass::NotFound;
    expect_aws(
        b.iam.update_role(&name, Some("d"), None).await,
        "NoSuchEntity",
        nf,
    );
    expect_aws(
        b.iam.update_assume_role_policy(&name, &trust()).await,
        "NoSuchEntity",
        nf,
    );
    expect_aws(
        b.iam.tag_role(&name, &tags(&[("k", "v")])).await,
        "NoSuchEntity",
        nf,
    );
    expect_aws(b.iam.list_role_tags(&name).await, "NoSuchEntity", nf);
    expect_aws(
        b.iam.list_attached_role_policies(&name).await,
        "NoSuchEntity",
        nf,
    );
    expect_aws(b.iam.list_role_policies(&name).await, "NoSuchEntity", nf);
    expect_aws(
        b.iam.put_role_policy(&name, "p", &inline_doc("b")).await,
        "NoSuchEntity",
        nf,
    );
    let e = expect_aws(b.iam.delete_role(&name).await, "NoSuchEntity", nf);
    assert_eq!(e.http_status, Some(404));
}

// ---- role tags ----

pub async fn role_tags_tag_untag_list(b: &Backend) {
    let mut input = role_input(&unique("pi-tags"));
    input.tags = tags(&[("a", "1")]);
    let role = b.iam.create_role(&input).await.unwrap();
    b.iam
        .tag_role(&role.name, &tags(&[("b", "2"), ("a", "changed")]))
        .await
        .expect("TagRole");
    assert_eq!(
        b.iam.list_role_tags(&role.name).await.unwrap(),
        tags(&[("a", "changed"), ("b", "2")])
    );
    b.iam
        .untag_role(&role.name, &["a".to_owned(), "absent".to_owned()])
        .await
        .expect("UntagRole");
    assert_eq!(
        b.iam.list_role_tags(&role.name).await.unwrap(),
        tags(&[("b", "2")])
    );
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert_eq!(got.tags, tags(&[("b", "2")]));
}

pub async fn role_tag_limits(b: &Backend) {
    let role = new_role(b, "pi-taglimits").await;
    let key128 = "k".repeat(128);
    let value256 = "v".repeat(256);
    b.iam
        .tag_role(&role.name, &tags(&[(&key128, &value256)]))
        .await
        .expect("at the limits");
    let key129 = "k".repeat(129);
    let value257 = "v".repeat(257);
    let ui = ErrorClass::UserInput;
    for over in [tags(&[(&key129, "v")]), tags(&[("k", &value257)])] {
        refusal(
            b.iam_server,
            "role-tag-rules",
            b.iam.tag_role(&role.name, &over).await,
            "ValidationError",
            ui,
        );
    }
    let fifty_one: Tags = (0..51).map(|i| (format!("t{i}"), "v".to_owned())).collect();
    let r = b.iam.tag_role(&role.name, &fifty_one).await;
    match known(b.iam_server, "role-tag-rules") {
        Some(d) => d.holds(&r, "51 tags in one request"),
        None => {
            let e = r.expect_err("51 tags");
            let e = e.aws().expect("an AWS error");
            assert!(
                matches!(e.code.as_str(), "LimitExceeded" | "ValidationError"),
                "{e}"
            );
        }
    }
    // 49 more make 50 with the one already there.
    let forty_nine: Tags = (0..49).map(|i| (format!("t{i}"), "v".to_owned())).collect();
    b.iam
        .tag_role(&role.name, &forty_nine)
        .await
        .expect("50 in all");
    let one_more = refusal(
        b.iam_server,
        "role-tags-quota",
        b.iam
            .tag_role(&role.name, &tags(&[("one-more", "v")]))
            .await,
        "LimitExceeded",
        ErrorClass::Quota,
    );
    let held = b.iam.list_role_tags(&role.name).await.unwrap().len();
    match one_more {
        Some(_) => assert_eq!(held, 50),
        None => assert!(held > 50, "{held} tags"),
    }
}

// ---- delete ----

pub async fn delete_role_conflicts_while_policies_remain(b: &Backend) {
    let role = new_role(b, "pi-delete").await;
    b.iam
        .attach_role_policy(&role.name, MANAGED[0])
        .await
        .unwrap();
    b.iam
        .put_role_policy(&role.name, "inline", &inline_doc("x"))
        .await
        .unwrap();
    let e = expect_aws(
        b.iam.delete_role(&role.name).await,
        "DeleteConflict",
        ErrorClass::Conflict,
    );
    assert_eq!(e.http_status, Some(409));
    b.iam
        .detach_role_policy(&role.name, MANAGED[0])
        .await
        .unwrap();
    expect_aws(
        b.iam.delete_role(&role.name).await,
        "DeleteConflict",
        ErrorClass::Conflict,
    );
    b.iam
        .delete_role_policy(&role.name, "inline")
        .await
        .unwrap();
    // A permissions boundary does not hold a role.
    b.iam
        .put_role_permissions_boundary(&role.name, BOUNDARY)
        .await
        .unwrap();
    b.iam
        .delete_role(&role.name)
        .await
        .expect("DeleteRole once nothing holds it");
    assert_eq!(b.iam.get_role(&role.name).await.unwrap(), None);
}

pub async fn instance_profiles_listed_for_role(b: &Backend) {
    let role = new_role(b, "pi-profiles").await;
    assert!(
        b.iam
            .list_instance_profiles_for_role(&role.name)
            .await
            .unwrap()
            .is_empty()
    );
    let absent = b
        .iam
        .list_instance_profiles_for_role(&unique("pi-absent"))
        .await;
    match known(b.iam_server, "list-instance-profiles-missing-role") {
        None => {
            expect_aws(absent, "NoSuchEntity", ErrorClass::NotFound);
        }
        Some(d) => d.holds_that(
            absent.as_ref().is_ok_and(|l| l.is_empty()),
            format_args!("{absent:?}"),
        ),
    }
}
